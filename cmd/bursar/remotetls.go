package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// remoteTLS returns the protoactor remote options for mutual TLS between
// nodes (--remote-tls-cert, --remote-tls-key, --remote-tls-ca): each node
// presents its certificate both as a server and as a client, and accepts a
// peer only with a certificate the cluster's CA signed. Answers and strong
// reads then travel encrypted, and a process without such a certificate
// can neither send a node answers nor read balances from it. Peers are
// checked against the CA, not against a host name: nodes dial each other
// at advertised addresses that certificates often do not name.
func remoteTLS(certFile, keyFile, caFile string) ([]remote.ConfigOption, error) {
	if certFile == "" && keyFile == "" && caFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("--remote-tls-cert, --remote-tls-key and --remote-tls-ca go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--remote-tls-cert %s, --remote-tls-key %s: %w", certFile, keyFile, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--remote-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--remote-tls-ca %s: no PEM certificate in it", caFile)
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("remote TLS: the peer presented no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return fmt.Errorf("remote TLS: peer certificate: %w", err)
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return fmt.Errorf("remote TLS: peer certificate not signed by --remote-tls-ca: %w", err)
		}
		return nil
	}
	server := &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
	}
	client := &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
		// The chain is checked by verify, against the CA, without the
		// host name (see above).
		InsecureSkipVerify:    true, //nolint:gosec // verified in VerifyPeerCertificate
		VerifyPeerCertificate: verify,
	}
	return []remote.ConfigOption{
		remote.WithServerOptions(grpc.Creds(credentials.NewTLS(server))),
		remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(client))),
	}, nil
}
