package inspect

import (
	"os"
	"strings"
	"testing"
)

// TestDocsListEveryRule keeps docs/inspect.md in step with Rules.
func TestDocsListEveryRule(t *testing.T) {
	doc, err := os.ReadFile("../docs/inspect.md")
	if err != nil {
		t.Skipf("docs not found: %v", err)
	}
	for _, r := range Rules {
		row := "| `" + r.ID + "` | " + r.Severity.String() + " |"
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/inspect.md lacks the row %q", row)
		}
	}
}
