package jitr

import "time"

// SetRateShares changes Config.RateShares of a handler a test built.
func SetRateShares(h *Handler, n float64) { h.cfg.RateShares = n }

// SetDepthTTL changes how long a reading of the registration queue's depth serves, so a test against a real
// queue reads it at every check.
func SetDepthTTL(h *Handler, d time.Duration) { h.depthTTL = d }

// ErrGiveWay is errGiveWay, for the tests.
var ErrGiveWay = errGiveWay

// SetRateLimits changes Config.RateLimits (the execution environment's pacing) of a handler a test built.
func SetRateLimits(h *Handler, limits map[string]float64) { h.cfg.RateLimits = limits }

// SetBatchMix sets what the handler's recent registration batches held: records, and how many of them were fresh.
func SetBatchMix(h *Handler, records, fresh float64) {
	h.mix.mu.Lock()
	defer h.mix.mu.Unlock()
	h.mix.records, h.mix.freshSum = records, fresh
}
