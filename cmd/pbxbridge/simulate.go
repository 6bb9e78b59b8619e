package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/pbxbridge/pbxbridge/crm/bitrix24"
	"github.com/pbxbridge/pbxbridge/pbx/itoolabs"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
	"github.com/pbxbridge/pbxbridge/pbx/xvb"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "simulate",
		Usage: "mango|xvb|itoolabs|bitrix24 --url <webhook url> …",
		Short: "Plays a whole realistic call against a gateway, like the PBX's test button",
		Long: `
Plays one call as the PBX would post it and prints each answer.

  simulate mango --url http://127.0.0.1:8080/hooks/mango --key <api_key> --salt <api_salt>
      Appeared → Connected → Disconnected → summary, signed with key and salt; the suffixes
      Mango appends (/events/call, /events/summary) are added to --url.
  simulate xvb --url http://127.0.0.1:8080/hooks/xvb --access-code 10019 [--key <secret>]
      INCOMING (8-prefixed number), contact lookup, ANSWERED with X-XVB-AC, COMPLETED without
      callid (as XVB's own example).
  simulate itoolabs --url http://127.0.0.1:8080/hooks/itoolabs --token <crm_token>
      contact lookup, INCOMING → ACCEPTED → COMPLETED of the agent's leg, then the history
      with a recording link, as a MegaFon-style PBX posts them.
  simulate bitrix24 install --url https://pbx.example.com/bitrix24 --domain example.bitrix24.ru …
      the installation a portal posts when its local application is saved (ONAPPINSTALL);
      pbxbridge keeps it only if the portal takes --access-token.
  simulate bitrix24 click --url … --domain … --member-id … --application-token … --user 1 --phone +79001234567
      a click on a number in Bitrix24 (ONEXTERNALCALLSTART), which places the call.

Exit status 1 if any message got an answer other than 200.`,
		CobraFunc: func(cmd *cobra.Command) {
			m := &cobra.Command{Use: "mango", Short: "Play a Mango Office call", RunE: simulateMango}
			m.Flags().String("url", "http://127.0.0.1:8080/hooks/mango", "webhook base URL (Mango appends /events/…)")
			m.Flags().String("key", "", "the account's api_key")
			m.Flags().String("salt", "", "the account's api_salt")
			x := &cobra.Command{Use: "xvb", Short: "Play an XVB PBX call", RunE: simulateXVB}
			x.Flags().String("url", "http://127.0.0.1:8080/hooks/xvb", "webhook URL")
			x.Flags().String("access-code", "10019", "the account's access_code")
			x.Flags().String("key", "", "the account's secret, sent as ?key=")
			i := &cobra.Command{Use: "itoolabs", Short: "Play an ITooLabs (MegaFon, Gravitel, Dom.ru) call", RunE: simulateITooLabs}
			i.Flags().String("url", "http://127.0.0.1:8080/hooks/itoolabs", "webhook URL (the cabinet's CRM address)")
			i.Flags().String("token", "", "the account's crm_token")
			cmd.AddCommand(m, x, i, bitrix24Command())
		},
	})
}

// step is one message of a simulated call, a form post (every PBX here posts forms).
type step struct {
	name   string
	url    string
	header http.Header
	body   string
}

func simulateMango(cmd *cobra.Command, _ []string) error {
	base := strings.TrimSuffix(flag(cmd, "url"), "/")
	key, salt := flag(cmd, "key"), flag(cmd, "salt")
	if key == "" || salt == "" {
		return fmt.Errorf("--key and --salt are the account's api_key and api_salt")
	}
	entry, leg := randomID(), randomID()
	var steps []step
	for _, m := range mango.SampleCall(entry, leg, time.Now()) {
		steps = append(steps, step{name: m.Name, url: base + m.Suffix, body: mango.FormBody(key, salt, m.JSON)})
	}
	fmt.Printf("Mango call entry_id=%s leg=%s\n", entry, leg)
	return play(cmd, steps)
}

func simulateXVB(cmd *cobra.Command, _ []string) error {
	u, err := url.Parse(flag(cmd, "url"))
	if err != nil {
		return err
	}
	if k := flag(cmd, "key"); k != "" {
		q := u.Query()
		q.Set("key", k)
		u.RawQuery = q.Encode()
	}
	callID := strings.ReplaceAll(randomID(), "=", "")
	var steps []step
	for _, m := range xvb.SampleCall(flag(cmd, "access-code"), callID, "89201119613", xvb.Completed{Recording: true}) {
		s := step{name: m.Name, url: u.String(), body: m.Body()}
		if m.AC != "" {
			s.header = http.Header{"X-Xvb-Ac": {m.AC}}
		}
		steps = append(steps, s)
	}
	fmt.Printf("XVB call callid=%s\n", callID)
	return play(cmd, steps)
}

func simulateITooLabs(cmd *cobra.Command, _ []string) error {
	u, token := flag(cmd, "url"), flag(cmd, "token")
	if token == "" {
		return fmt.Errorf("--token is the account's crm_token")
	}
	callID := randomUUID()
	var steps []step
	for _, m := range itoolabs.SampleCall(token, callID, time.Now()) {
		steps = append(steps, step{name: m.Name, url: u, body: m.Body})
	}
	fmt.Printf("ITooLabs call callid=%s\n", callID)
	return play(cmd, steps)
}

func bitrix24Command() *cobra.Command {
	b := &cobra.Command{Use: "bitrix24", Short: "Play what a Bitrix24 portal posts to its application"}
	install := &cobra.Command{Use: "install", Short: "Post the application's installation (ONAPPINSTALL)", RunE: simulateBitrix24}
	install.Flags().String("access-token", "", "the installation's access token (default: random, which the portal refuses)")
	install.Flags().String("refresh-token", "", "the installation's refresh token (default: random)")
	click := &cobra.Command{Use: "click", Short: "Post a click on a number (ONEXTERNALCALLSTART)", RunE: simulateBitrix24}
	click.Flags().String("user", "1", "the Bitrix24 user who clicked")
	click.Flags().String("phone", "+79001234567", "the number clicked")
	click.Flags().String("line", "", "the line (LINE_NUMBER)")
	click.Flags().String("call-id", "", "Bitrix24's CALL_ID of the call (default: random)")
	for _, c := range []*cobra.Command{install, click} {
		c.Flags().String("url", "http://127.0.0.1:8080/bitrix24", "the pbx_crm route: the application's handler and installation path")
		c.Flags().String("domain", "example.bitrix24.ru", "the portal's host (the target's URL)")
		c.Flags().String("member-id", "", "the portal's member_id (default: random)")
		c.Flags().String("application-token", "", "the application_token (default: random)")
	}
	b.AddCommand(install, click)
	return b
}

func simulateBitrix24(cmd *cobra.Command, _ []string) error {
	auth := bitrix24.Auth{Domain: flag(cmd, "domain"), MemberID: orRandom(flag(cmd, "member-id")),
		ApplicationToken: orRandom(flag(cmd, "application-token"))}
	auth.ClientEndpoint, auth.ServerEndpoint = "https://"+auth.Domain+"/rest/", bitrix24.DefaultOAuthURL+"/rest/"
	var form url.Values
	if cmd.Name() == "install" {
		auth.AccessToken, auth.RefreshToken, auth.ExpiresIn = orRandom(flag(cmd, "access-token")), orRandom(flag(cmd, "refresh-token")), time.Hour
		form = bitrix24.InstallForm(auth)
	} else {
		form = bitrix24.CallStartForm(auth, bitrix24.CallStart{CallID: orRandom(flag(cmd, "call-id")),
			UserID: flag(cmd, "user"), Phone: flag(cmd, "phone"), Line: flag(cmd, "line")})
	}
	fmt.Printf("Bitrix24 %s member_id=%s\n", form.Get("event"), auth.MemberID)
	return play(cmd, []step{{name: form.Get("event"), url: flag(cmd, "url"), body: form.Encode()}})
}

// orRandom is v, or a random id for a flag left empty.
func orRandom(v string) string {
	if v != "" {
		return v
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func play(cmd *cobra.Command, steps []step) error {
	client := &http.Client{Timeout: 10 * time.Second}
	failed := 0
	for _, s := range steps {
		req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, s.url, strings.NewReader(s.body))
		if err != nil {
			return err
		}
		for k, vs := range s.header {
			req.Header[k] = vs
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			fmt.Printf("%-13s error: %v\n", s.name, err)
			failed++
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		fmt.Printf("%-13s %d %-8s %s\n", s.name, resp.StatusCode, time.Since(start).Round(time.Millisecond/10), strings.TrimSpace(string(body)))
		if resp.StatusCode != http.StatusOK {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d messages were not accepted", failed, len(steps))
	}
	return nil
}

func flag(cmd *cobra.Command, name string) string {
	v, _ := cmd.Flags().GetString(name)
	return v
}

// randomID looks like Mango's ids: base64 of random bytes.
func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// randomUUID looks like the ITooLabs family's call ids: a random (version 4) UUID.
func randomUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// prettyJSON indents a JSON body for printing, keeping its key order, or returns it as it is.
func prettyJSON(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}
