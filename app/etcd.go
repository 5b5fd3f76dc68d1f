package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// newEtcdClient builds the etcd client from the configuration. It does not
// wait for a connection: /readyz tells whether etcd answers.
func newEtcdClient(cfg Config) (*clientv3.Client, error) {
	ec := cfg.Etcd
	tlsConfig, err := etcdTLS(ec)
	if err != nil {
		return nil, err
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.EtcdEndpoints,
		DialTimeout: ec.DialTimeout,
		Username:    ec.Username,
		Password:    ec.Password,
		TLS:         tlsConfig,
		// The client's own logging is noise here; failures reach the
		// server's log as 503s and readiness.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", cfg.EtcdEndpoints, err)
	}
	return client, nil
}

// etcdTLS returns nil (plain connections) unless a CA or a client
// certificate is configured.
func etcdTLS(ec EtcdConfig) (*tls.Config, error) {
	if ec.CA == "" && ec.Cert == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if ec.CA != "" {
		pem, err := os.ReadFile(ec.CA)
		if err != nil {
			return nil, fmt.Errorf("--etcd-ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("--etcd-ca: no PEM certificate found in " + ec.CA)
		}
	}
	if ec.Cert != "" {
		pair, err := tls.LoadX509KeyPair(ec.Cert, ec.Key)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}
