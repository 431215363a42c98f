package jitr

import "time"

// SetRateShares changes Config.RateShares of a handler a test built.
func SetRateShares(h *Handler, n float64) { h.cfg.RateShares = n }

// SetDepthTTL changes how long a reading of the registration queue's depth serves, so a test against a real
// queue reads it at every check.
func SetDepthTTL(h *Handler, d time.Duration) { h.depthTTL = d }

// ErrGiveWay is errGiveWay, for the tests.
var ErrGiveWay = errGiveWay
