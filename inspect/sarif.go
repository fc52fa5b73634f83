package inspect

import (
	"encoding/json"
	"io"
	"net/url"
	"path/filepath"
	"strings"
)

// SARIF 2.1.0 (OASIS) log, with the fields cordon fills.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool               sarifTool                   `json:"tool"`
	OriginalURIBaseIDs map[string]sarifArtifactLoc `json:"originalUriBaseIds,omitempty"`
	Results            []sarifResult               `json:"results"`
	ColumnKind         string                      `json:"columnKind,omitempty"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri,omitempty"`
	Version        string      `json:"version,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name,omitempty"`
	ShortDescription     sarifText       `json:"shortDescription"`
	FullDescription      sarifText       `json:"fullDescription"`
	Help                 sarifText       `json:"help"`
	DefaultConfiguration sarifRuleConfig `json:"defaultConfiguration"`
	Properties           map[string]any  `json:"properties,omitempty"`
}

type sarifRuleConfig struct {
	Level string `json:"level"`
}

type sarifResult struct {
	RuleID     string          `json:"ruleId"`
	RuleIndex  int             `json:"ruleIndex"`
	Level      string          `json:"level"`
	Message    sarifText       `json:"message"`
	Locations  []sarifLocation `json:"locations,omitempty"`
	Properties map[string]any  `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifactLoc `json:"artifactLocation"`
	Region           *sarifRegion     `json:"region,omitempty"`
}

// sarifRegion points at a line of the artifact (1-based).
type sarifRegion struct {
	StartLine int `json:"startLine"`
}

type sarifArtifactLoc struct {
	URI       string `json:"uri"`
	URIBaseID string `json:"uriBaseId,omitempty"`
}

// sarifLevel maps severities to SARIF levels.
func sarifLevel(s Severity) string {
	switch {
	case s >= SeverityHigh:
		return "error"
	case s == SeverityMedium:
		return "warning"
	}
	return "note"
}

// securitySeverity is the CVSS-like score GitHub code scanning reads.
func securitySeverity(s Severity) string {
	switch s {
	case SeverityCritical:
		return "9.5"
	case SeverityHigh:
		return "8.0"
	case SeverityMedium:
		return "5.5"
	case SeverityLow:
		return "3.0"
	}
	return "0.0"
}

// WriteSARIF writes the findings as a SARIF 2.1.0 log; paths are relative
// to the uriBaseId TARGET.
func (r *Report) WriteSARIF(w io.Writer, toolVersion string) error {
	driver := sarifDriver{Name: "cordon-inspect", InformationURI: "https://github.com/cordon-vms/cordon/blob/main/docs/inspect.md",
		Version: toolVersion, Rules: []sarifRule{}}
	for _, rule := range Rules {
		driver.Rules = append(driver.Rules, sarifRule{
			ID:                   rule.ID,
			Name:                 sarifRuleName(rule.ID),
			ShortDescription:     sarifText{rule.Short},
			FullDescription:      sarifText{rule.Help},
			Help:                 sarifText{rule.Help},
			DefaultConfiguration: sarifRuleConfig{Level: sarifLevel(rule.Severity)},
			Properties:           map[string]any{"security-severity": securitySeverity(rule.Severity), "tags": []string{"security", strings.SplitN(rule.ID, ".", 2)[0]}},
		})
	}
	run := sarifRun{Tool: sarifTool{Driver: driver}, Results: []sarifResult{}}
	if r.Target != "" {
		run.OriginalURIBaseIDs = map[string]sarifArtifactLoc{"TARGET": {URI: targetURI(r.Target)}}
	}
	for _, f := range r.Findings {
		msg := f.Evidence
		if f.Detail != "" {
			msg += " (" + f.Detail + ")"
		}
		res := sarifResult{RuleID: f.Rule, RuleIndex: ruleIndex(f.Rule), Level: sarifLevel(f.Severity),
			Message:    sarifText{msg},
			Properties: map[string]any{"severity": f.Severity.String(), "security-severity": securitySeverity(f.Severity)}}
		if f.Path != "" {
			res.Locations = []sarifLocation{{PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifactLoc{
				URI: (&url.URL{Path: f.Path}).EscapedPath(), URIBaseID: "TARGET"}}}}
			if f.Line > 0 {
				res.Locations[0].PhysicalLocation.Region = &sarifRegion{StartLine: f.Line}
			}
		}
		run.Results = append(run.Results, res)
	}
	log := sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{run}}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

// sarifRuleName turns account.empty-password into AccountEmptyPassword.
func sarifRuleName(id string) string {
	var b strings.Builder
	up := true
	for _, r := range id {
		if r == '.' || r == '-' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}

// targetURI returns the absolute file URI of the target, ending in a slash
// as SARIF requires of base URIs.
func targetURI(t string) string {
	if abs, err := filepath.Abs(t); err == nil {
		t = abs
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(strings.TrimSuffix(t, "/")) + "/"}
	return u.String()
}
