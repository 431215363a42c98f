# The test kit (testkit/): what the product's tests import and the emulator builds on — moto's launcher with its
# IAM, quota and fidelity patches (testkit/moto) and its Go handle (testkit/motoserver), the test PKI
# (testkit/testpki, testkit/cmd/testpki), the synthesized template read and resolved as the emulator deploys it
# (testkit/stacktemplate). Never deployed.
#   make test-testkit   the launcher's patches through the real aws-sdk-go-v2 clients, each rule shown to hold

TESTKIT_PKGS := ./testkit/...

TEST_TARGETS += test-testkit

.PHONY: test-testkit
test-testkit: .stamps/go .stamps/venv ## the test kit: moto's IAM, quota and fidelity patches, its Go handle, the test PKI
	$(GO) test -count=1 -v -timeout 10m $(TESTKIT_PKGS)
