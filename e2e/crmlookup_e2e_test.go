package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/crm/amocrm/amocrmtest"
	"github.com/pbxbridge/pbxbridge/crm/bitrix24/bitrix24test"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// crmLookups are the CRMs the lookup gateway asks: a Bitrix24 portal and an amoCRM account,
// each also as a slow copy that answers after the lookup's timeout.
type crmLookups struct {
	b24, slowB24 *bitrix24test.Portal
	amo, slowAmo *amocrmtest.Account
}

func newCRMLookups(t testing.TB) *crmLookups {
	// One secret for both, one {env.TEST_B24_SECRET}. The benchmark asks faster than a
	// portal's leaky bucket drains; the limit is the connector's matter, not the lookup's.
	opts := bitrix24test.Options{WebhookSecret: "b24-inbound-webhook-secret-9q7w2e", Rate: 1e6, Burst: 1e6}
	l := &crmLookups{
		b24: bitrix24test.New(t, opts), slowB24: bitrix24test.New(t, opts),
		amo: amocrmtest.New(t, amoToken, amoUser101), slowAmo: amocrmtest.New(t, amoToken, amoUser101),
	}
	for _, b := range []*bitrix24test.Portal{l.b24, l.slowB24} {
		b.AddContact("Иван", "Петров", "+7 (912) 345-67-89", "7")
		b.AddCompany("Рога и Копыта", "+7 495 111-22-33", "8")
		b.AddUser("7", "101")
		b.AddUser("8", "102")
	}
	for _, a := range []*amocrmtest.Account{l.amo, l.slowAmo} {
		a.AddContact("Ольга Смирнова", "8 916 765-43-21", amoUser101)
	}
	l.slowB24.Delay(2 * lookupTimeout)
	l.slowAmo.Delay(2 * lookupTimeout)
	return l
}

// lookupGateway has XVB accounts main and slow asking Bitrix24, and ITooLabs accounts megafon
// and megafon-slow asking amoCRM, within lookupTimeout; main and megafon cache answers. XVB amo
// and ITooLabs megafon-b24 ask the other CRM.
func lookupGateway(crmURL string, l *crmLookups) string {
	b24 := func(p *bitrix24test.Portal) string {
		return strings.TrimSuffix(p.Webhook(), p.WebhookSecret+"/") + "{env.TEST_B24_SECRET}/"
	}
	amo := func(u string, cache bool) string {
		opts := []string{"token {env.TEST_AMO_TOKEN}", gatewaytest.Block("users", fmt.Sprint("101 ", amoUser101)), "timeout " + lookupTimeout.String()}
		if cache {
			opts = append(opts, "cache 60s")
		}
		return gatewaytest.Block("lookup amocrm "+u, opts...)
	}
	return gatewaytest.Caddyfile{
		PBX: []string{
			crmTarget(crmURL),
			gatewaytest.Block("xvb main", "access_code "+xvbAccessCode, "secret {env.TEST_XVB_KEY}", "sources 127.0.0.1",
				gatewaytest.Block("lookup bitrix24 "+b24(l.b24), "timeout "+lookupTimeout.String(), "cache 60s"), "forward crm"),
			gatewaytest.Block("xvb slow", "access_code 10020", "sources 127.0.0.1",
				gatewaytest.Block("lookup bitrix24 "+b24(l.slowB24), "timeout "+lookupTimeout.String()), "forward crm"),
			gatewaytest.Block("xvb amo", "access_code 10021", "sources 127.0.0.1", amo(l.amo.URL, false), "forward crm"),
			gatewaytest.Block("itoolabs megafon", "crm_token {env.TEST_ITOOLABS_CRM_TOKEN}", "sources 127.0.0.1", amo(l.amo.URL, true), "forward crm"),
			gatewaytest.Block("itoolabs megafon-b24", "crm_token {env.TEST_ITOOLABS_CRM_TOKEN}", "sources 127.0.0.1",
				gatewaytest.Block("lookup bitrix24 "+b24(l.b24), "timeout "+lookupTimeout.String()), "forward crm"),
			gatewaytest.Block("itoolabs megafon-slow", "crm_token {env.TEST_ITOOLABS_CRM_TOKEN}", "sources 127.0.0.1", amo(l.slowAmo.URL, false), "forward crm"),
		},
		Site: []string{
			gatewaytest.AccessLogWithout("key", "crm_token"),
			gatewaytest.Block("route /hooks/xvb", "pbx_webhook main"),
			gatewaytest.Block("route /hooks/xvb-slow", "pbx_webhook slow"),
			gatewaytest.Block("route /hooks/itoolabs", "pbx_webhook megafon"),
			gatewaytest.Block("route /hooks/itoolabs-slow", "pbx_webhook megafon-slow"),
			gatewaytest.Block("route /hooks/xvb-amo", "pbx_webhook amo"),
			gatewaytest.Block("route /hooks/itoolabs-b24", "pbx_webhook megafon-b24"),
			gatewaytest.Block("route /baseline", `respond "accepted" 200`),
		},
	}.String()
}

func startLookups(t testing.TB, l *crmLookups) *gatewaytest.Gateway {
	t.Helper()
	crm := gatewaytest.NewCRM(t, nil)
	g := gatewaytest.Start(t, lookupGateway(crm.URL+"/events", l), "TEST_XVB_KEY="+xvbWebhookKey, "TEST_B24_SECRET="+l.b24.WebhookSecret,
		"TEST_AMO_TOKEN="+amoToken, "TEST_ITOOLABS_CRM_TOKEN="+itoolabsCRMToken)
	g.WaitReady()
	return g
}

// askContact asks the gateway at path who phone is, as XVB (form with access_code) or
// ITooLabs (form with crm_token) does, and returns the answer and how long it took.
func askContact(t testing.TB, g *gatewaytest.Gateway, path string, form url.Values) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, body := gatewaytest.Request(t, http.MethodPost, g.URL+path, formType, form.Encode())
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("contact lookup at %s: %d %s %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return string(body), took
}

func xvbContact(code, phone string) url.Values {
	return url.Values{"access_code": {code}, "cmd": {"contact"}, "phone": {phone}}
}

func itoolabsContact(phone string) url.Values {
	return url.Values{"crm_token": {itoolabsCRMToken}, "cmd": {"contact"}, "phone": {phone}, "callid": {"c-" + phone}}
}

// XVB's cmd=contact is answered from Bitrix24 and ITooLabs' contact from amoCRM: the
// contact's (or company's) name and the responsible user's extension, {} for an unknown
// number; a CRM slower than the timeout gets {} within it; the second question is cached; the
// webhook's secret and the token stay out of the log.
func TestContactLookupFromCRMs(t *testing.T) {
	l := newCRMLookups(t)
	g := startLookups(t, l)
	for _, tt := range []struct {
		name, path string
		form       url.Values
		want       string
	}{
		{"xvb, bitrix24 contact", "/hooks/xvb?key=" + xvbWebhookKey, xvbContact(xvbAccessCode, "89123456789"), `{"contact_name":"Иван Петров","responsible":"101"}`},
		{"xvb, bitrix24 company", "/hooks/xvb?key=" + xvbWebhookKey, xvbContact(xvbAccessCode, "74951112233"), `{"contact_name":"Рога и Копыта","responsible":"102"}`},
		{"xvb, bitrix24 unknown", "/hooks/xvb?key=" + xvbWebhookKey, xvbContact(xvbAccessCode, "79990000000"), `{}`},
		{"xvb, bitrix24 slow", "/hooks/xvb-slow", xvbContact("10020", "89123456789"), `{}`},
		{"itoolabs, amocrm contact", "/hooks/itoolabs", itoolabsContact("79167654321"), `{"contact_name":"Ольга Смирнова","responsible":"101"}`},
		{"itoolabs, amocrm unknown", "/hooks/itoolabs", itoolabsContact("79990000000"), `{}`},
		{"itoolabs, amocrm slow", "/hooks/itoolabs-slow", itoolabsContact("79167654321"), `{}`},
		{"xvb, amocrm contact", "/hooks/xvb-amo", xvbContact("10021", "89167654321"), `{"contact_name":"Ольга Смирнова","responsible":"101"}`},
		{"itoolabs, bitrix24 contact", "/hooks/itoolabs-b24", itoolabsContact("79123456789"), `{"contact_name":"Иван Петров","responsible":"101"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			answer, took := askContact(t, g, tt.path, tt.form)
			if answer != tt.want {
				t.Errorf("answer %s, want %s", answer, tt.want)
			}
			if took > lookupTimeout+500*time.Millisecond {
				t.Errorf("answered in %v; the lookup's timeout is %v", took, lookupTimeout)
			}
		})
	}
	b24Asked, amoAsked := l.b24.Stats().Requests, len(l.amo.AuthHeaders())
	askContact(t, g, "/hooks/xvb?key="+xvbWebhookKey, xvbContact(xvbAccessCode, "89123456789"))
	askContact(t, g, "/hooks/itoolabs", itoolabsContact("79167654321"))
	if b, a := l.b24.Stats().Requests, len(l.amo.AuthHeaders()); b != b24Asked || a != amoAsked {
		t.Errorf("a cached number asked Bitrix24 %d and amoCRM %d more times", b-b24Asked, a-amoAsked)
	}
	checkMetrics(t, g, map[string]float64{
		`pbxbridge_contact_lookups_total{account="main",outcome="found"}`:           2,
		`pbxbridge_contact_lookups_total{account="main",outcome="not_found"}`:       1,
		`pbxbridge_contact_lookups_total{account="main",outcome="cached"}`:          1,
		`pbxbridge_contact_lookups_total{account="slow",outcome="timeout"}`:         1,
		`pbxbridge_contact_lookups_total{account="megafon",outcome="found"}`:        1,
		`pbxbridge_contact_lookups_total{account="megafon",outcome="not_found"}`:    1,
		`pbxbridge_contact_lookups_total{account="megafon",outcome="cached"}`:       1,
		`pbxbridge_contact_lookups_total{account="megafon-slow",outcome="timeout"}`: 1,
	})
	logs := g.Logs()
	if strings.Contains(logs, l.b24.WebhookSecret) || strings.Contains(logs, amoToken) {
		t.Error("the Bitrix24 webhook secret or the amoCRM token is in the log")
	}
}

// BenchmarkContactLookupFromCRMs measures cmd=contact answered from Bitrix24 (three REST
// calls) and from the cache, through the built binary, against the same gateway's respond
// route:
//
//	go test -run '^$' -bench BenchmarkContactLookupFromCRMs -benchtime 2000x ./e2e
func BenchmarkContactLookupFromCRMs(b *testing.B) {
	l := newCRMLookups(b)
	g := startLookups(b, l)
	var baseline time.Duration
	b.Run("respond", func(b *testing.B) {
		baseline = measure(b, 0, 0, func(int64) *http.Request { return xvbRequest(g, "/baseline", "") })
	})
	contact := func(phone string) *http.Request {
		return xvbRequest(g, "/hooks/xvb", xvbContact(xvbAccessCode, phone).Encode())
	}
	b.Run("contact-bitrix24-cached", func(b *testing.B) {
		measure(b, baseline, 0, func(int64) *http.Request { return contact("89123456789") })
	})
	b.Run("contact-bitrix24", func(b *testing.B) {
		// Unknown numbers: one findbycomm each, never cached twice.
		measure(b, baseline, 0, func(n int64) *http.Request { return contact(fmt.Sprintf("7921%07d", n)) })
	})
}
