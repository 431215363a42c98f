package devicesim

import (
	"testing"

	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

func newCA(t *testing.T) *testpki.Pair {
	t.Helper()
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
