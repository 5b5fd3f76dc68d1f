package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// redisPeer speaks RESP itself: the two commands and their one-line answers
// need no client library (and go.mod no dependency).
type redisPeer struct {
	addr    string
	timeout time.Duration
}

func newRedis(addr string, timeout time.Duration) *redisPeer {
	return &redisPeer{addr: addr, timeout: timeout}
}

func (p *redisPeer) worker(ctx context.Context, _ int) (client, error) {
	c := &redisClient{p: p}
	if err := c.dial(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (p *redisPeer) close() {}

// redisClient is one connection with one command in flight.
type redisClient struct {
	p    *redisPeer
	conn net.Conn // nil after a failure: redialled for the next command
	r    *bufio.Reader
	cmd  []byte
}

func (c *redisClient) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: c.p.timeout}
	conn, err := d.DialContext(ctx, "tcp", c.p.addr)
	if err != nil {
		return err
	}
	c.conn, c.r = conn, bufio.NewReader(conn)
	return nil
}

// acquire: SET key v NX PX 30000, which answers +OK when the key was free.
func (c *redisClient) acquire(ctx context.Context, key string) error {
	return c.do(ctx, "+OK", "SET", key, "v", "NX", "PX", "30000")
}

// release: DEL key, which answers :1 when it deleted the key.
func (c *redisClient) release(ctx context.Context, key string) error {
	return c.do(ctx, ":1", "DEL", key)
}

func (c *redisClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
	}
}

// do sends one command and checks that its answer is the line want.
func (c *redisClient) do(ctx context.Context, want string, args ...string) error {
	if c.conn == nil {
		if err := c.dial(ctx); err != nil {
			return err
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetDeadline(dl)
	}
	c.cmd = appendCommand(c.cmd[:0], args...)
	_, err := c.conn.Write(c.cmd)
	var line []byte
	if err == nil {
		line, err = c.r.ReadSlice('\n')
	}
	if err != nil {
		// The connection's state is unknown: start over on a new one.
		c.close()
		c.conn = nil
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("timeout")
		}
		return err
	}
	line = bytes.TrimSuffix(line, []byte("\r\n"))
	if string(line) != want {
		// Any other answer is one line too (an error, a nil, a number).
		return fmt.Errorf("%s answered %q", args[0], line)
	}
	return nil
}

// appendCommand appends a command as a RESP array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}
