// Package settings declares a command's settings once (name, default, help, group, validation,
// and whether a setting changes what a run learns) and derives from that one table the CLI flags,
// the names experiment specs accept, the defaults, validation, and the rule for what may change
// when a run is resumed.
package settings
