// Package experiment runs a grid of training configurations over several seeds from a small JSON
// spec, evaluates every run with the eval suite, and aggregates mean ± standard deviation into
// results.md and results.json. Finished runs and evaluations are skipped, so a grid can be
// completed over several sittings and re-aggregated at any time.
package experiment
