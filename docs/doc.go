// Package docs holds the project's documentation (the Markdown files of this folder). It has no code: its test
// checks that every `make` target and `fleetctl` subcommand the documentation names exists, and that every
// relative link resolves, so a renamed command fails `make test` instead of a reader.
package docs
