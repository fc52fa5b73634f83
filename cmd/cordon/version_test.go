package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestOneVersion: cordon version, the SARIF report and the CycloneDX SBOM
// name the same version.
func TestOneVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"version"}, nil, &out, &errb); code != 0 {
		t.Fatalf("version: %d %s", code, errb.String())
	}
	v := strings.Fields(out.String())[1]
	for _, format := range []string{"sarif", "cyclonedx"} {
		out.Reset()
		if code := Main([]string{"inspect", "../../inspect/testdata/clean", "--format", format}, nil, &out, &errb); code != 0 {
			t.Fatalf("inspect --format %s: %d %s", format, code, errb.String())
		}
		var doc any
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), `"version": "`+v+`"`) && !strings.Contains(out.String(), `"version":"`+v+`"`) {
			t.Errorf("%s does not name version %q", format, v)
		}
	}
}
