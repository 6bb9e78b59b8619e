package event

import (
	"fmt"
	"net/url"
	"strings"
)

// CheckLink is the rule for every URL a PBX hands over for the CRM (a recording link):
// docs/recordings.md tells CRMs to put recording_url into <audio src> or a link, so only an absolute
// http:// or https:// URL with a host passes; javascript:, data:, file: and relative or
// malformed links do not. The error says why, for the event's error field; it quotes at most
// the scheme, never the link.
func CheckLink(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("not a URL")
	case !strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https"):
		scheme := u.Scheme
		if len(scheme) > 16 {
			scheme = scheme[:16]
		}
		return fmt.Errorf("scheme %q is not http or https", scheme)
	case u.Host == "" || u.Opaque != "":
		return fmt.Errorf("no host")
	}
	return nil
}
