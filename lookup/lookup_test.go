package lookup

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/crm/amocrm/amocrmtest"
	"github.com/pbxbridge/pbxbridge/crm/bitrix24/bitrix24test"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx"
)

func TestContactQuery(t *testing.T) {
	tests := []struct{ phone, want string }{
		{"79201119613", `{"pbx":"xvb","account":"main","phone":"+79201119613"}`},
		{"89201119613", `{"pbx":"xvb","account":"main","phone":"+79201119613"}`},
		{" 79201119613", `{"pbx":"xvb","account":"main","phone":"+79201119613"}`},
		{"igorokunev-mbl", `{"pbx":"xvb","account":"main","phone":"igorokunev-mbl"}`},
		{"a<b>&c", `{"pbx":"xvb","account":"main","phone":"a<b>&c"}`},
	}
	for _, tt := range tests {
		if got := string(Query(event.Origin{PBX: "xvb", Account: "main"}, tt.phone, "")); got != tt.want {
			t.Errorf("Query(%q) = %s, want %s", tt.phone, got, tt.want)
		}
	}
}

func TestContactAnswer(t *testing.T) {
	tests := []struct{ name, crm, want string }{
		{"name and responsible", `{"name":"Вася/Рога и Копыта","responsible":"100"}`, `{"contact_name":"Вася/Рога и Копыта","responsible":"100"}`},
		{"escaped Cyrillic comes out raw", `{"name":"\u0412\u0430\u0441\u044f","responsible":"100"}`, `{"contact_name":"Вася","responsible":"100"}`},
		{"no HTML escaping", `{"name":"A&B <C>"}`, `{"contact_name":"A&B <C>"}`},
		{"numeric responsible", `{"name":"Вася","responsible":100}`, `{"contact_name":"Вася","responsible":"100"}`},
		{"name only", `{"name":"Вася"}`, `{"contact_name":"Вася"}`},
		{"responsible only, extra fields ignored", `{"responsible":"101","id":7}`, `{"responsible":"101"}`},
		{"blank fields omitted", `{"name":"  ","responsible":""}`, `{}`},
		{"bad field dropped, good one kept", `{"name":{"first":"Вася"},"responsible":"100"}`, `{"responsible":"100"}`},
		{"numeric name is not a name", `{"name":5,"responsible":true}`, `{}`},
		{"unknown number", `{}`, `{}`},
		{"null", `null`, `{}`},
		{"array", `[{"name":"Вася"}]`, `{}`},
		{"404 page", `<html>Not Found</html>`, `{}`},
		{"empty body", ``, `{}`},
		{"truncated", `{"name":"Вася"`, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(ReadContact([]byte(tt.crm)).Answer()); got != tt.want {
				t.Errorf("ReadContact(%s).Answer() = %s, want %s", tt.crm, got, tt.want)
			}
		})
	}
}

const amoToken = "amo-lookup-token-8d1f3c"

// The ready sources answer from the CRM's own API: the name and the responsible user's
// extension, "not found" for an unknown number, and within the timeout on any failure.
func TestSources(t *testing.T) {
	b24 := bitrix24test.New(t, bitrix24test.Options{})
	b24.AddContact("Иван", "Петров", "+7 (916) 123-45-67", "7")
	b24.AddCompany("Рога и Копыта", "8 495 111-22-33", "8")
	b24.AddUser("7", "101")
	slowB24 := bitrix24test.New(t, bitrix24test.Options{})
	slowB24.AddContact("Иван", "Петров", "+79161234567", "7")
	slowB24.Delay(time.Second)

	amo := amocrmtest.New(t, amoToken, 504141)
	amo.AddContact("Ольга Смирнова", "8-916-765-43-21", 504141)
	revoked := amocrmtest.New(t, amoToken)
	revoked.AddContact("Ольга Смирнова", "+79167654321", 504141)
	revoked.Revoke(true)
	slowAmo := amocrmtest.New(t, amoToken)
	slowAmo.AddContact("Ольга Смирнова", "+79167654321", 504141)
	slowAmo.Delay(time.Second)

	expand := func(s string) string { return strings.ReplaceAll(s, "{env.AMO}", amoToken) }
	amoLookup := func(url string) *Config {
		return &Config{Source: "amocrm", URL: url, Token: "{env.AMO}", Users: map[string]string{"102": "504141"}, Timeout: pbx.Duration(200 * time.Millisecond)}
	}
	tests := []struct {
		name    string
		cfg     *Config
		phone   string
		want    Contact
		outcome string
	}{
		{"bitrix24 contact", &Config{Source: "bitrix24", URL: b24.Webhook()}, "+79161234567", Contact{"Иван Петров", "101"}, "found"},
		{"bitrix24 company, responsible without an inner number", &Config{Source: "bitrix24", URL: b24.Webhook()}, "+74951112233", Contact{Name: "Рога и Копыта"}, "found"},
		{"bitrix24 unknown number", &Config{Source: "bitrix24", URL: b24.Webhook()}, "+79990000000", Contact{}, "not_found"},
		{"bitrix24 wrong secret", &Config{Source: "bitrix24", URL: b24.URL + "/rest/1/wrong/"}, "+79161234567", Contact{}, "error"},
		{"bitrix24 slow", &Config{Source: "bitrix24", URL: slowB24.Webhook(), Timeout: pbx.Duration(200 * time.Millisecond)}, "+79161234567", Contact{}, "timeout"},
		{"amocrm contact", amoLookup(amo.URL), "+79167654321", Contact{"Ольга Смирнова", "102"}, "found"},
		{"amocrm unknown number (204)", amoLookup(amo.URL), "+79990000000", Contact{}, "not_found"},
		{"amocrm revoked token", amoLookup(revoked.URL), "+79167654321", Contact{}, "error"},
		{"amocrm slow", amoLookup(slowAmo.URL), "+79167654321", Contact{}, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.cfg.Provision(expand)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, outcome := c.Find(context.Background(), event.Origin{PBX: "xvb", Account: "main"}, tt.phone, "")
			if got != tt.want || outcome != tt.outcome {
				t.Errorf("Find = %+v, %s; want %+v, %s", got, outcome, tt.want, tt.outcome)
			}
			if took := time.Since(start); took > 500*time.Millisecond {
				t.Errorf("took %v", took)
			}
		})
	}
	if reqs := b24.Stats().Methods; !slices.Equal(reqs[:3], []string{"crm.duplicate.findbycomm", "crm.contact.get", "user.get"}) {
		t.Errorf("bitrix24 methods %v", reqs)
	}
	for _, h := range amo.AuthHeaders() {
		if h != "Bearer "+amoToken {
			t.Errorf("amoCRM Authorization %q", h)
		}
	}
}

// A cached answer asks the CRM nothing.
func TestCacheHitAsksNothing(t *testing.T) {
	b24 := bitrix24test.New(t, bitrix24test.Options{})
	b24.AddContact("Иван", "Петров", "+79161234567", "7")
	c, err := (&Config{Source: "bitrix24", URL: b24.Webhook(), Cache: pbx.Duration(time.Minute)}).Provision(func(s string) string { return s })
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"found", "cached"} {
		if got, outcome := c.Find(context.Background(), event.Origin{}, "+79161234567", ""); got.Name != "Иван Петров" || outcome != want {
			t.Errorf("Find = %+v, %s; want %s", got, outcome, want)
		}
	}
	if n := b24.Stats().Requests; n != 3 {
		t.Errorf("%d requests, want 3 (findbycomm, contact.get, user.get), the first time only", n)
	}
}

func TestProvisionChecks(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Source: "bitrix24", URL: "https://portal.bitrix24.ru/"}, "inbound webhook"},
		{Config{Source: "amocrm", URL: "https://x.amocrm.ru"}, "token is required"},
		{Config{Source: "amocrm", URL: "https://x.amocrm.ru", Token: "t", Users: map[string]string{"101": "ivan"}}, `users: 101 "ivan"`},
		{Config{Source: "bitrix24", URL: "https://p/rest/1/s/", Headers: http.Header{"A": {"b"}}}, "header is for a lookup URL of your own"},
		{Config{URL: "https://crm.example.com/lookup", Token: "t"}, "token and users are amocrm's"},
		{Config{Source: "hubspot", URL: "https://x"}, `no source "hubspot"`},
	} {
		if _, err := tt.cfg.Provision(func(s string) string { return s }); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Provision(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}
