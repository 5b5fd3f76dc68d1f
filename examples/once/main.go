// Command once shows the at-most-once pattern: before handling an event,
// acquire a lock named after the event's UUID and never release it. Only the
// first delivery of an event gets 201; every redelivery — from a retrying
// queue, a second consumer, a restarted process — gets 409 and is skipped.
//
// It talks to a Locklock server over HTTP with nothing but net/http:
//
//	make run &                       # a server on 127.0.0.1:8080
//	go run ./examples/once -server http://127.0.0.1:8080/v1/api
//
// Give the locks an expires_in longer than the window in which duplicates
// can arrive (here 7 days), so that they clean themselves up afterwards.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	server := flag.String("server", "http://127.0.0.1:8080/v1/api", "Locklock API base URL")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A queue that delivers one event twice.
	events := []string{
		"6f1c3b4e-8a2d-4c5e-9f01-23456789abcd",
		"0b7e2c1d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
		"6f1c3b4e-8a2d-4c5e-9f01-23456789abcd",
	}
	for _, event := range events {
		first, err := claim(ctx, http.DefaultClient, *server, event)
		switch {
		case err != nil:
			// Unknown: the event may or may not be claimed. Leave it on
			// the queue; the redelivery will find out.
			fmt.Fprintln(os.Stderr, "cannot claim", event, ":", err)
		case first:
			fmt.Println("processing", event)
		default:
			fmt.Println("skipping duplicate", event)
		}
	}
}

// claim acquires the event's lock for 7 days. It reports true for the first
// claim, false when the event was claimed before.
func claim(ctx context.Context, client *http.Client, server, event string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+"/lock/uuid/"+event,
		strings.NewReader(`{"expires_in": 604800}`))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	switch resp.StatusCode {
	case http.StatusCreated:
		return true, nil
	case http.StatusConflict:
		return false, nil
	default:
		return false, fmt.Errorf("unexpected status %s", resp.Status)
	}
}
