package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/internal/natstest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// testCA issues certificates for one test and writes them as PEM files.
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	ca := &testCA{t: t, dir: t.TempDir(), pool: x509.NewCertPool()}
	ca.cert, ca.key = ca.issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "pbxbridge test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, "ca")
	ca.pool.AddCert(ca.cert)
	return ca
}

// issue signs tmpl (with the CA, or itself while there is none) and writes <name>.pem and
// <name>.key.
func (ca *testCA) issue(tmpl *x509.Certificate, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	ca.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	parent, signer := tmpl, key
	if ca.cert != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		ca.t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		ca.t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		ca.t.Fatal(err)
	}
	ca.write(name+".pem", "CERTIFICATE", der)
	ca.write(name+".key", "EC PRIVATE KEY", keyDER)
	return cert, key
}

func (ca *testCA) write(name, typ string, der []byte) {
	if err := os.WriteFile(ca.path(name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		ca.t.Fatal(err)
	}
}

func (ca *testCA) path(name string) string { return filepath.Join(ca.dir, name) }

// A gateway reaches a NATS server that requires TLS with client certificates: it checks the
// server's certificate against its own CA under server_name (the certificate does not name
// 127.0.0.1) and presents its client certificate. A missing certificate file is refused at
// config load, with the path in the error.
func TestNATSOverTLS(t *testing.T) {
	t.Parallel() // mostly waiting for the handover
	ca := newTestCA(t)
	serverCert, serverKey := ca.issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "nats.test"}, DNSNames: []string{"nats.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, "server")
	ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "pbxbridge"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, "client")

	srv := natstest.RunServer(t, &server.Options{
		TLS: true, TLSVerify: true, TLSTimeout: 5,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey, Leaf: serverCert}},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.pool,
		},
	})

	block := func(cert string) string {
		return fmt.Sprintf("tls {\n\t\t\t\tca %s\n\t\t\t\tcert %s\n\t\t\t\tkey %s\n\t\t\t\tserver_name nats.test\n\t\t\t}",
			ca.path("ca.pem"), cert, ca.path("client.key"))
	}
	urls := []string{fmt.Sprintf("nats://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)}
	crm := gatewaytest.NewCRM(t, nil)
	g := startGateway(t, "g1", urls, block(ca.path("client.pem")), crm.URL+"/events")
	for _, m := range mango.SampleCall("tls-1", "tls-1-leg", time.Now()) {
		if code, body := g.Post("/hooks/mango"+m.Suffix, formType, mango.FormBody(mangoKey, mangoSalt, m.JSON)); code != http.StatusOK {
			t.Fatalf("%s: %d %s", m.Name, code, body)
		}
	}
	crm.WaitDelivered(t, 4, 30*time.Second)

	config := filepath.Join(t.TempDir(), "Caddyfile")
	missing := ca.path("nosuch.pem")
	caddyfile := strings.NewReplacer("{ADMIN}", "127.0.0.1:2019", "{HTTP}", "http://127.0.0.1:8080", "{METRICS}", "http://127.0.0.1:9180").
		Replace(gatewayConfig("g2", urls, block(missing), crm.URL))
	if err := os.WriteFile(config, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(gatewaytest.Binary(t), "validate", "--config", config, "--adapter", "caddyfile").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "nats tls") || !strings.Contains(string(out), missing) {
		t.Fatalf("validate with a missing client certificate: %v\n%s", err, out)
	}
}
