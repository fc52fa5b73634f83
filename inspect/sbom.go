package inspect

import (
	"io"
	"path"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// BOM returns the components as a CycloneDX BOM: one component per name and
// version with its purl, CPE and the file it was found in (evidence
// occurrence), and the --vulns matches as vulnerabilities.
func (r *Report) BOM(toolVersion string, timestamp time.Time) *cdx.BOM {
	bom := cdx.NewBOM()
	bom.SerialNumber = ""
	name := path.Base(r.Target)
	if name == "." || name == "/" || name == "" {
		name = "firmware"
	}
	bom.Metadata = &cdx.Metadata{
		Timestamp: timestamp.UTC().Format(time.RFC3339),
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type: cdx.ComponentTypeApplication, Name: "cordon", Version: toolVersion}}},
		Component: &cdx.Component{BOMRef: "target", Type: cdx.ComponentTypeFirmware, Name: name},
	}
	comps := []cdx.Component{}
	var vulns []cdx.Vulnerability
	for _, c := range r.Components {
		ref := c.PURL
		cc := cdx.Component{
			BOMRef:     ref,
			Type:       cdx.ComponentType(componentKind(c.Name)),
			Name:       c.Name,
			Version:    c.Version,
			PackageURL: c.PURL,
			CPE:        c.CPE,
		}
		props := []cdx.Property{{Name: "cordon:found_by", Value: c.FoundBy}, {Name: "cordon:confidence", Value: c.Confidence}}
		if c.Note != "" {
			props = append(props, cdx.Property{Name: "cordon:note", Value: c.Note})
		}
		if len(c.Applets) > 0 {
			props = append(props, cdx.Property{Name: "cordon:applets", Value: strings.Join(c.Applets, " ")})
		}
		cc.Properties = &props
		if c.Path != "" {
			cc.Evidence = &cdx.Evidence{Occurrences: &[]cdx.EvidenceOccurrence{{Location: c.Path}}}
		}
		comps = append(comps, cc)
		for _, v := range c.Vulns {
			cv := cdx.Vulnerability{
				BOMRef:      v.ID + "/" + ref,
				ID:          v.ID,
				Source:      &cdx.Source{Name: "OSV"},
				Description: v.Summary,
				Affects:     &[]cdx.Affects{{Ref: ref}},
			}
			if v.Fixed != "" {
				cv.Recommendation = "upgrade " + c.Name + " to " + v.Fixed + " or later"
			}
			vulns = append(vulns, cv)
		}
	}
	bom.Components = &comps
	if len(vulns) > 0 {
		bom.Vulnerabilities = &vulns
	}
	deps := []string{}
	for _, c := range comps {
		deps = append(deps, c.BOMRef)
	}
	bom.Dependencies = &[]cdx.Dependency{{Ref: "target", Dependencies: &deps}}
	return bom
}

// WriteCycloneDX writes the BOM as CycloneDX 1.6 JSON.
func (r *Report) WriteCycloneDX(w io.Writer, toolVersion string, timestamp time.Time) error {
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	return enc.EncodeVersion(r.BOM(toolVersion, timestamp), cdx.SpecVersion1_6)
}
