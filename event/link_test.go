package event

import "testing"

func TestCheckLink(t *testing.T) {
	for _, tt := range []struct {
		link string
		ok   bool
	}{
		{"https://vpbx18-dev/ui/msg_download/120/10019/f92H16GAUDE7R10EMOLYYw.q722", true},
		{"http://pbx.example.net/rec.mp3?media=mp3;type=listen", true},
		{"HTTPS://pbx.example.net/rec.mp3", true},
		{"javascript:alert(document.cookie)", false},
		{"JavaScript:alert(1)", false},
		{" javascript:alert(1)", false},
		{"data:text/html,<script>alert(1)</script>", false},
		{"vbscript:msgbox(1)", false},
		{"file:///etc/passwd", false},
		{"//evil.example/x", false},
		{"/ui/msg_download/1", false},
		{"https:evil", false},
		{"https:///nohost", false},
		{"http://a b/", false},
		{"https://h/\x00", false},
	} {
		if err := CheckLink(tt.link); (err == nil) != tt.ok {
			t.Errorf("%q: %v, want ok %v", tt.link, err, tt.ok)
		}
	}
}
