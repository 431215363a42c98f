# The documentation (README.md, docs/, emulator/README.md, testkit/README.md): a test that every `make` target and
# `fleetctl` subcommand the docs name exists (make -pRrq; cmd/fleetctl's command table) and every relative link
# resolves; the README's Layout table names every top-level folder and its first-level folders.
#   make test-docs

DOCS_PKGS := ./docs/...

TEST_TARGETS += test-docs

.PHONY: test-docs
test-docs: .stamps/go ## the docs: every make target and fleetctl subcommand they name exists, every relative link resolves, the Layout table matches the tree
	$(GO) test -count=1 -v $(DOCS_PKGS)
