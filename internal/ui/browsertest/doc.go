// Package browsertest drives the dashboard (internal/ui) in headless
// Chromium against a real `locklock serve`, as a person would use it, and
// saves a screenshot of each step under ui-screenshots/. Its tests carry
// the build tag browser, so that `go test ./...` leaves them out; `make
// test-ui` installs Debian's chromium when it is missing and runs them, and
// they fail, not skip, without it. `make docs-screenshot` refreshes
// docs/dashboard.png with the same harness.
package browsertest
