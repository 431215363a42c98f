package jitr

import "time"

// SetTicker replaces the ticker takeIdleShares re-decides on, so a test drives it.
func SetTicker(h *Handler, ticker func(time.Duration) (<-chan time.Time, func())) { h.ticker = ticker }

// SetDepthTTL changes how long a reading of the registration queue's depth serves, so a test against a real
// queue reads it at every check.
func SetDepthTTL(h *Handler, d time.Duration) { h.depthTTL = d }

// ErrGiveWay is errGiveWay, for the tests.
var ErrGiveWay = errGiveWay
