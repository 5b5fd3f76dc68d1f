package app_test

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/locklock/locklock/app"
)

// TestCommitMetrics: a Badger server reports its group commits (batch
// sizes, commit durations) on /metrics; a memory server has none to report.
func TestCommitMetrics(t *testing.T) {
	count := regexp.MustCompile(`(?m)^locklock_storage_commit_batch_steps_count (\d+)$`)

	s := startApp(t, testConfig(t, app.EngineBadger))
	defer s.app.RequireStop()
	base := s.srv.URL()
	for range 3 {
		for _, method := range []string{"POST", "DELETE"} {
			if resp, _ := do(t, method, base+lockPath, ""); resp.StatusCode >= 300 {
				t.Fatalf("%s: %d", method, resp.StatusCode)
			}
		}
	}
	text := metricsText(t, base)
	m := count.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no locklock_storage_commit_batch_steps on a Badger server:\n%s", text)
	}
	// Six sequential steps: six commits, or fewer if the sweeper's joined.
	if n, _ := strconv.Atoi(m[1]); n < 6 {
		t.Errorf("%d commits counted after six writing requests", n)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^locklock_storage_commit_batch_steps_bucket\{le="1"\} \d+$`),
		regexp.MustCompile(`(?m)^locklock_storage_commit_duration_seconds_bucket\{le="0\.001024"\} \d+$`),
		regexp.MustCompile(`(?m)^locklock_storage_commit_reruns_total 0$`),
	} {
		if !want.MatchString(text) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	mem := startApp(t, testConfig(t, app.EngineMemory))
	defer mem.app.RequireStop()
	if count.MatchString(metricsText(t, mem.srv.URL())) {
		t.Error("a memory server reports group commits")
	}
}
