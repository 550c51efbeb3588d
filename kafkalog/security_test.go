package kafkalog

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testCA returns a server TLS configuration for 127.0.0.1 and the path of
// the PEM file of the CA that signed it.
func testCA(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kafka test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, ca
}

// reach reports whether a client with sec can create the topics on the
// broker at addrs, within a few seconds.
func reach(t *testing.T, addrs []string, sec Security) error {
	t.Helper()
	opts, err := sec.Options()
	if err != nil {
		t.Fatalf("options: %v", err)
	}
	cl, err := kgo.NewClient(append(ClientConfig{Brokers: addrs}.Options(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

// TestSecurityReachesAManagedBroker: over TLS with SASL (SCRAM and PLAIN),
// as a managed Kafka asks, the clients get in with the right credentials
// and the right CA, and not without them.
func TestSecurityReachesAManagedBroker(t *testing.T) {
	serverTLS, ca := testCA(t)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(serverTLS), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "bursar", "s3cret"), kfake.Superuser("SCRAM-SHA-512", "bursar512", "s3cret512"),
		kfake.Superuser("PLAIN", "plain", "p1ain"))
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	addrs := broker.ListenAddrs()
	for _, tc := range []struct {
		name string
		sec  Security
		ok   bool
	}{
		{"TLS with SCRAM-SHA-256", Security{CAFile: ca, SASLMechanism: "SCRAM-SHA-256", SASLUser: "bursar", SASLPassword: "s3cret"}, true},
		{"TLS with SCRAM-SHA-512", Security{CAFile: ca, SASLMechanism: "SCRAM-SHA-512", SASLUser: "bursar512", SASLPassword: "s3cret512"}, true},
		{"TLS with PLAIN", Security{TLS: true, CAFile: ca, SASLMechanism: "PLAIN", SASLUser: "plain", SASLPassword: "p1ain"}, true},
		{"a wrong password", Security{CAFile: ca, SASLMechanism: "SCRAM-SHA-256", SASLUser: "bursar", SASLPassword: "guess"}, false},
		{"no credentials", Security{CAFile: ca}, false},
		{"plaintext", Security{SASLMechanism: "SCRAM-SHA-256", SASLUser: "bursar", SASLPassword: "s3cret"}, false},
		{"TLS without the CA", Security{TLS: true, SASLMechanism: "SCRAM-SHA-256", SASLUser: "bursar", SASLPassword: "s3cret"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := reach(t, addrs, tc.sec); (err == nil) != tc.ok {
				t.Fatalf("ping: %v, want success %v", err, tc.ok)
			}
		})
	}
}

func TestSecurityRefusesWhatCannotWork(t *testing.T) {
	_, ca := testCA(t)
	for _, tc := range []struct {
		name string
		sec  Security
		want string
	}{
		{"PLAIN without TLS", Security{SASLMechanism: "PLAIN", SASLUser: "u", SASLPassword: "p"}, "in the clear"},
		{"unknown mechanism", Security{TLS: true, SASLMechanism: "GSSAPI", SASLUser: "u", SASLPassword: "p"}, "mechanism"},
		{"mechanism without a password", Security{TLS: true, SASLMechanism: "SCRAM-SHA-256", SASLUser: "u"}, "password"},
		{"a user without a mechanism", Security{SASLUser: "u"}, "without a mechanism"},
		{"a missing CA file", Security{CAFile: "/nonexistent/ca.pem"}, "CA"},
		{"a CA file that is not PEM", Security{CAFile: os.Args[0]}, "no PEM"},
		{"a client certificate without its key", Security{CAFile: ca, CertFile: ca}, "both"},
	} {
		if _, err := tc.sec.Options(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	if opts, err := (Security{}).Options(); err != nil || len(opts) != 0 {
		t.Fatalf("the zero Security: %v %v", opts, err)
	}
}
