package motoserver

import (
	"context"
	"net/http"
	"testing"
)

func TestStartResetStop(t *testing.T) {
	s, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reset(); err != nil {
		t.Errorf("reset: %v", err)
	}
	s.Stop()
	s.Stop() // idempotent
	if _, err := http.Get(s.URL + "/moto-api/data.json"); err == nil {
		t.Errorf("moto still answers on %s after Stop", s.URL)
	}
}
