package main

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// etcdMutexPeer: etcd's own lock recipe, clientv3/concurrency.Mutex, on one
// client shared by the workers (as the etcd engine shares one).
type etcdMutexPeer struct {
	cli *clientv3.Client
}

func newEtcdMutex(addr string, timeout time.Duration) (*etcdMutexPeer, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: timeout})
	if err != nil {
		return nil, err
	}
	return &etcdMutexPeer{cli: cli}, nil
}

// worker makes the worker's session (its lease) before the run, as the
// in-process benchmark does: a lock service would keep one too.
func (p *etcdMutexPeer) worker(ctx context.Context, _ int) (client, error) {
	s, err := concurrency.NewSession(p.cli, concurrency.WithTTL(60), concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	return &etcdMutexClient{s: s}, nil
}

func (p *etcdMutexPeer) close() { _ = p.cli.Close() }

type etcdMutexClient struct {
	s *concurrency.Session
	m *concurrency.Mutex // the one held, between acquire and release
}

func (c *etcdMutexClient) acquire(ctx context.Context, key string) error {
	c.m = concurrency.NewMutex(c.s, "/peerload/"+key)
	return c.m.Lock(ctx)
}

func (c *etcdMutexClient) release(ctx context.Context, key string) error {
	if c.m == nil || c.m.Key() == "" {
		return fmt.Errorf("release of %s: not held", key)
	}
	err := c.m.Unlock(ctx)
	c.m = nil
	return err
}

func (c *etcdMutexClient) close() { _ = c.s.Close() }
