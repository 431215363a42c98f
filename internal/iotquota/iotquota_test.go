package iotquota

import (
	"strings"
	"testing"
)

func TestDefaultsAreACopy(t *testing.T) {
	d := Defaults()
	d["DescribeCertificate"] = 1e6
	if r, _ := Rate("DescribeCertificate"); r != 10 {
		t.Errorf("changing the copy changed the table: DescribeCertificate = %v", r)
	}
}

// Unlisted must not exceed any listed default, or a client paced to it could outrun an operation's quota.
func TestUnlistedIsTheLowestDefault(t *testing.T) {
	lowest := 0.0
	for api, r := range Defaults() {
		if r <= 0 {
			t.Errorf("%s has rate %v, want a positive rate", api, r)
		}
		if lowest == 0 || r < lowest {
			lowest = r
		}
	}
	if Unlisted != lowest {
		t.Errorf("Unlisted = %v, want the lowest default %v", float64(Unlisted), lowest)
	}
}

func TestSelect(t *testing.T) {
	got := Select("AttachPolicy", "CreateThing")
	if len(got) != 2 || got["AttachPolicy"] != 15 || got["CreateThing"] != 100 {
		t.Errorf("Select = %v, want AttachPolicy 15, CreateThing 100", got)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "DescribeCertificates") {
			t.Errorf("Select of an operation not in the table: recovered %v, want a panic naming it", r)
		}
	}()
	Select("DescribeCertificates")
}
