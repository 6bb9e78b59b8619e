package main

import (
	"fmt"
	"io"
	"net/http"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/pbxbridge/pbxbridge/delivery"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "crm-echo",
		Usage: "[addr] [--secret whsec_…]…",
		Short: "A CRM stand-in that prints what it receives and checks the signature",
		Long: `
Listens on addr (default 127.0.0.1:9999), answers 200 to every POST and prints each event
with its webhook-id. With --secret (repeatable while rotating) it verifies the Standard
Webhooks signature of each event and says so.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.MaximumNArgs(1)
			cmd.Flags().StringArray("secret", nil, "Standard Webhooks secret (whsec_…) to verify signatures with")
			cmd.RunE = crmEcho
		},
	})
}

func crmEcho(cmd *cobra.Command, args []string) error {
	addr := "127.0.0.1:9999"
	if len(args) == 1 {
		addr = args[0]
	}
	secrets, _ := cmd.Flags().GetStringArray("secret")
	if len(secrets) > 0 {
		if _, err := delivery.NewSigner(secrets); err != nil { // the rules of a target's secret
			return err
		}
	}
	// Verified by the Standard Webhooks library, not pbxbridge's code: what a CRM would run.
	webhooks := make([]*standardwebhooks.Webhook, len(secrets))
	for i, secret := range secrets {
		var err error
		if webhooks[i], err = standardwebhooks.NewWebhook(secret); err != nil {
			return err
		}
	}
	fmt.Printf("crm-echo listening on http://%s\n", addr)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id := r.Header.Get("webhook-id")
		verdict := "unsigned"
		if len(webhooks) > 0 {
			verdict = "signature OK"
			if err := verify(webhooks, body, r.Header); err != nil {
				verdict = "SIGNATURE INVALID: " + err.Error()
			}
		}
		fmt.Printf("--- %s %s webhook-id=%s %s\n%s\n", time.Now().Format(time.TimeOnly), r.URL.Path, id, verdict, prettyJSON(body))
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

// verify is nil when the headers carry a signature of body by one of the secrets (while
// rotating, any one will do), with a webhook-timestamp within the library's 5 minutes of now.
func verify(webhooks []*standardwebhooks.Webhook, body []byte, header http.Header) error {
	var err error
	for _, wh := range webhooks {
		if err = wh.Verify(body, header); err == nil {
			return nil
		}
	}
	return err
}
