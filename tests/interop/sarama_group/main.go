// Sarama ConsumerGroup interop check for Weir.
//
// Built in GOPATH mode against Debian's golang-github-shopify-sarama-dev
// (Sarama 1.22):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o sarama-group-interop .
//
// Scenario (each step bounded by a deadline):
//
//  1. Create a -partitions topic, produce -before keyed records.
//  2. Start two members, "a" and "b", each its own sarama.ConsumerGroup
//     (own client, so two group members), running the usual
//     `for { group.Consume(ctx, topics, handler) }` loop with a ConsumeClaim
//     loop that records every message and marks it.
//  3. Wait until both hold claims from the same generation, disjoint and
//     together covering every partition, unchanged for a while; cross-check
//     with DescribeGroups (Stable, two members, the same assignment).
//  4. Produce -during records on a goroutine; halfway, member b leaves
//     (context cancelled, Close() -> LeaveGroup).
//  5. Wait until member a holds every partition in a newer generation, then
//     produce -after more records.
//  6. Wait until every record was consumed at least once; close a. Check the
//     group's committed offsets (OffsetFetch) equal the high water marks and
//     DescribeGroups says Empty.
//
// Throughout, no partition may be claimed by both members at once.  A JSON
// summary goes to stdout (last line); the exit code is 0 only when every
// check passed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

type sessionInfo struct {
	Member     string  `json:"member"`
	Generation int32   `json:"generation"`
	MemberID   string  `json:"member_id"`
	Claims     []int32 `json:"claims"`
	AtMs       int64   `json:"at_ms"`
}

type summary struct {
	OK                  bool               `json:"ok"`
	Topic               string             `json:"topic"`
	Group               string             `json:"group"`
	Partitions          int                `json:"partitions"`
	Produced            int                `json:"produced"`
	Unique              int                `json:"unique"`
	Missing             int                `json:"missing"`
	Duplicates          int                `json:"duplicates"`
	ConsumedBy          map[string]int     `json:"consumed_by"`
	BothPhase           map[string][]int32 `json:"both_phase"`
	BothGeneration      int32              `json:"both_generation"`
	DescribeBoth        map[string][]int32 `json:"describe_both"`
	DescribeBothState   string             `json:"describe_both_state"`
	TakeoverClaims      []int32            `json:"takeover_claims"`
	TakeoverGen         int32              `json:"takeover_generation"`
	BConsumedAfterLeave int                `json:"b_consumed_after_leave"`
	Overlaps            []string           `json:"overlaps"`
	Sessions            []sessionInfo      `json:"sessions"`
	ClientErrors        []string           `json:"client_errors"`
	HighWaterMarks      map[string]int64   `json:"high_water_marks"`
	Committed           map[string]int64   `json:"committed"`
	FinalState          string             `json:"final_state"`
	Errors              []string           `json:"errors"`
	ElapsedMs           int64              `json:"elapsed_ms"`
}

var (
	mu      sync.Mutex
	s       *summary
	seen    []int
	owners  = map[int32]string{} // partition -> member currently inside ConsumeClaim for it
	start   = time.Now()
	topicNm string
)

func fail(format string, a ...interface{}) {
	mu.Lock()
	defer mu.Unlock()
	s.Errors = append(s.Errors, fmt.Sprintf(format, a...))
}

func finish() {
	mu.Lock()
	s.OK = len(s.Errors) == 0
	s.ElapsedMs = time.Since(start).Milliseconds()
	out, _ := json.Marshal(s)
	mu.Unlock()
	fmt.Println(string(out))
	if s.OK {
		os.Exit(0)
	}
	os.Exit(1)
}

type member struct {
	name       string
	group      sarama.ConsumerGroup
	cancel     context.CancelFunc
	done       chan struct{}
	claims     []int32 // claims of the live session; nil between sessions
	generation int32
	consumed   int
	left       bool
	afterLeave int
}

func (m *member) Setup(sess sarama.ConsumerGroupSession) error {
	claims := append([]int32(nil), sess.Claims()[topicNm]...)
	sort.Slice(claims, func(i, j int) bool { return claims[i] < claims[j] })
	mu.Lock()
	defer mu.Unlock()
	if claims == nil {
		claims = []int32{}
	}
	m.claims = claims
	m.generation = sess.GenerationID()
	s.Sessions = append(s.Sessions, sessionInfo{
		Member: m.name, Generation: sess.GenerationID(), MemberID: sess.MemberID(),
		Claims: claims, AtMs: time.Since(start).Milliseconds(),
	})
	for t := range sess.Claims() {
		if t != topicNm {
			s.Errors = append(s.Errors, fmt.Sprintf("%s claimed unexpected topic %q", m.name, t))
		}
	}
	return nil
}

func (m *member) Cleanup(sess sarama.ConsumerGroupSession) error {
	mu.Lock()
	defer mu.Unlock()
	m.claims = nil
	return nil
}

func (m *member) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	p := claim.Partition()
	mu.Lock()
	if other, ok := owners[p]; ok && other != m.name {
		s.Overlaps = append(s.Overlaps, fmt.Sprintf("p%d claimed by %s (gen %d) while %s still consumes it", p, m.name, sess.GenerationID(), other))
	}
	owners[p] = m.name
	mu.Unlock()
	defer func() {
		mu.Lock()
		if owners[p] == m.name {
			delete(owners, p)
		}
		mu.Unlock()
	}()
	for msg := range claim.Messages() {
		v, err := strconv.Atoi(string(msg.Value))
		mu.Lock()
		if err != nil || v < 0 || v >= len(seen) {
			s.Errors = append(s.Errors, fmt.Sprintf("%s: p%d offset %d: bad value %q", m.name, msg.Partition, msg.Offset, msg.Value))
		} else {
			seen[v]++
		}
		m.consumed++
		if m.left {
			m.afterLeave++
		}
		mu.Unlock()
		sess.MarkMessage(msg, "")
	}
	return nil
}

func (m *member) snapshot() ([]int32, int32) {
	mu.Lock()
	defer mu.Unlock()
	return m.claims, m.generation
}

// offsetsRetention is Consumer.Offsets.Retention: 0 (Sarama's default) makes
// Sarama 1.22 commit with OffsetCommit v1, anything else with v2.
var offsetsRetention time.Duration

func newConfig(clientID string) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Consumer.Offsets.Retention = offsetsRetention
	cfg.ClientID = clientID
	cfg.Version = sarama.V2_1_0_0
	cfg.Net.DialTimeout = 5 * time.Second
	cfg.Net.ReadTimeout = 30 * time.Second
	cfg.Net.WriteTimeout = 10 * time.Second
	cfg.Metadata.Retry.Max = 10
	cfg.Metadata.Retry.Backoff = 250 * time.Millisecond
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewHashPartitioner
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Retry.Backoff = 250 * time.Millisecond
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.CommitInterval = 500 * time.Millisecond
	cfg.Consumer.MaxWaitTime = 250 * time.Millisecond
	cfg.Consumer.Group.Session.Timeout = 10 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Timeout = 20 * time.Second
	cfg.Consumer.Group.Rebalance.Retry.Max = 8
	cfg.Consumer.Group.Rebalance.Retry.Backoff = 250 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Strategy = sarama.BalanceStrategyRange
	return cfg
}

func startMember(name string, addrs []string, group string) *member {
	m := &member{name: name, done: make(chan struct{})}
	g, err := sarama.NewConsumerGroup(addrs, group, newConfig("weir-sarama-"+name))
	if err != nil {
		fail("NewConsumerGroup %s: %v", name, err)
		finish()
	}
	m.group = g
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		for err := range g.Errors() {
			mu.Lock()
			s.ClientErrors = append(s.ClientErrors, fmt.Sprintf("%s: %v", name, err))
			mu.Unlock()
		}
	}()
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			err := g.Consume(ctx, []string{topicNm}, m)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				mu.Lock()
				s.ClientErrors = append(s.ClientErrors, fmt.Sprintf("%s: Consume: %v", name, err))
				mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-time.After(250 * time.Millisecond):
				}
			}
		}
	}()
	return m
}

// stop cancels the member's Consume loop, waits for it and closes the group
// (which sends LeaveGroup).
func (m *member) stop(timeout time.Duration) {
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(timeout):
		fail("%s: Consume loop did not return within %s of cancel", m.name, timeout)
	}
	mu.Lock()
	m.left = true
	mu.Unlock()
	closed := make(chan error, 1)
	go func() { closed <- m.group.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			fail("%s: Close: %v", m.name, err)
		}
	case <-time.After(timeout):
		fail("%s: Close did not return within %s", m.name, timeout)
	}
}

func waitFor(what string, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	fail("timed out after %s waiting for %s", timeout, what)
	return false
}

func key(i, keys int) string { return fmt.Sprintf("k%d", i%keys) }

func produceRange(producer sarama.SyncProducer, from, to, keys int, onHalf func()) error {
	half := from + (to-from)/2
	for i := from; i < to; i++ {
		if i == half && onHalf != nil {
			onHalf()
		}
		_, _, err := producer.SendMessage(&sarama.ProducerMessage{
			Topic: topicNm,
			Key:   sarama.StringEncoder(key(i, keys)),
			Value: sarama.StringEncoder(strconv.Itoa(i)),
		})
		if err != nil {
			return fmt.Errorf("SendMessage %d: %v", i, err)
		}
		mu.Lock()
		s.Produced++
		mu.Unlock()
	}
	return nil
}

func sorted32(xs []int32) []int32 {
	out := append([]int32(nil), xs...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma separated bootstrap brokers")
	topic := flag.String("topic", "sarama-group-interop", "topic name")
	group := flag.String("group", "sarama-group-interop", "consumer group id")
	partitions := flag.Int("partitions", 4, "partitions to create")
	before := flag.Int("before", 400, "records produced before the members start")
	during := flag.Int("during", 400, "records produced while b leaves")
	after := flag.Int("after", 200, "records produced after a took over")
	keys := flag.Int("keys", 37, "number of distinct keys")
	timeout := flag.Duration("timeout", 100*time.Second, "overall deadline")
	verbose := flag.Bool("verbose", true, "log Sarama's client messages to stderr")
	flag.DurationVar(&offsetsRetention, "offsets-retention", 0,
		"Consumer.Offsets.Retention; 0 (default) commits with OffsetCommit v1, otherwise v2")
	flag.Parse()

	topicNm = *topic
	total := *before + *during + *after
	seen = make([]int, total)
	s = &summary{
		Topic: *topic, Group: *group, ConsumedBy: map[string]int{}, BothPhase: map[string][]int32{},
		DescribeBoth: map[string][]int32{}, Overlaps: []string{}, Sessions: []sessionInfo{},
		ClientErrors: []string{}, HighWaterMarks: map[string]int64{}, Committed: map[string]int64{},
		Errors: []string{},
	}
	go func() {
		time.Sleep(*timeout)
		fail("overall timeout %s exceeded", *timeout)
		mu.Lock()
		out, _ := json.Marshal(s)
		mu.Unlock()
		fmt.Println(string(out))
		os.Exit(2)
	}()
	if *verbose {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.LstdFlags|log.Lmicroseconds)
	}
	addrs := strings.Split(*brokers, ",")

	// 1. topic + first records
	cfg := newConfig("weir-sarama-setup")
	admin, err := sarama.NewClusterAdmin(addrs, cfg)
	if err != nil {
		fail("NewClusterAdmin: %v", err)
		finish()
	}
	defer admin.Close()
	if err := admin.CreateTopic(*topic, &sarama.TopicDetail{NumPartitions: int32(*partitions), ReplicationFactor: 1}, false); err != nil {
		fail("CreateTopic: %v", err)
		finish()
	}
	client, err := sarama.NewClient(addrs, cfg)
	if err != nil {
		fail("NewClient: %v", err)
		finish()
	}
	defer client.Close()
	all := make([]int32, 0, *partitions)
	if !waitFor("the topic's partitions in metadata", 15*time.Second, func() bool {
		if client.RefreshMetadata(*topic) != nil {
			return false
		}
		ps, err := client.Partitions(*topic)
		if err != nil || len(ps) != *partitions {
			return false
		}
		all = sorted32(ps)
		return true
	}) {
		finish()
	}
	s.Partitions = len(all)
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		fail("NewSyncProducer: %v", err)
		finish()
	}
	defer producer.Close()
	if err := produceRange(producer, 0, *before, *keys, nil); err != nil {
		fail("%v", err)
		finish()
	}

	// 2. two members
	a := startMember("a", addrs, *group)
	b := startMember("b", addrs, *group)

	// 3. a stable split between both
	var stableSince time.Time
	var lastKey string
	ok := waitFor("both members to hold a stable, disjoint, complete split", 45*time.Second, func() bool {
		ca, ga := a.snapshot()
		cb, gb := b.snapshot()
		good := len(ca) > 0 && len(cb) > 0 && ga == gb && len(ca)+len(cb) == len(all)
		if good {
			union := map[int32]bool{}
			for _, p := range append(append([]int32{}, ca...), cb...) {
				union[p] = true
			}
			good = len(union) == len(all)
		}
		k := fmt.Sprint(ca, ga, cb, gb)
		if !good || k != lastKey {
			lastKey, stableSince = k, time.Now()
			return false
		}
		if time.Since(stableSince) < 1500*time.Millisecond {
			return false
		}
		s.BothPhase["a"], s.BothPhase["b"], s.BothGeneration = ca, cb, ga
		return true
	})
	if !ok {
		a.stop(20 * time.Second)
		b.stop(20 * time.Second)
		finish()
	}
	// Cross-check with the broker's view (DescribeGroups v0).
	descs, err := admin.DescribeConsumerGroups([]string{*group})
	if err != nil || len(descs) != 1 {
		fail("DescribeConsumerGroups: %v (%d groups)", err, len(descs))
	} else {
		d := descs[0]
		s.DescribeBothState = d.State
		if d.Err != sarama.ErrNoError {
			fail("DescribeConsumerGroups: group error %v", d.Err)
		}
		if d.State != "Stable" || d.ProtocolType != "consumer" || d.Protocol != "range" {
			fail("DescribeConsumerGroups: state %q protocol type %q protocol %q, want Stable/consumer/range", d.State, d.ProtocolType, d.Protocol)
		}
		for _, md := range d.Members {
			asg, err := md.GetMemberAssignment()
			if err != nil {
				fail("member %s: bad assignment bytes: %v", md.ClientId, err)
				continue
			}
			name := strings.TrimPrefix(md.ClientId, "weir-sarama-")
			s.DescribeBoth[name] = sorted32(asg.Topics[*topic])
		}
		if fmt.Sprint(s.DescribeBoth["a"]) != fmt.Sprint(s.BothPhase["a"]) || fmt.Sprint(s.DescribeBoth["b"]) != fmt.Sprint(s.BothPhase["b"]) || len(d.Members) != 2 {
			fail("DescribeConsumerGroups assignment %v differs from the members' claims %v", s.DescribeBoth, s.BothPhase)
		}
	}

	// 4. produce while b leaves
	prodDone := make(chan error, 1)
	halfway := make(chan struct{})
	go func() {
		prodDone <- produceRange(producer, *before, *before+*during, *keys, func() { close(halfway) })
	}()
	select {
	case <-halfway:
	case err := <-prodDone:
		fail("producing during the run stopped before halfway: %v", err)
		a.stop(20 * time.Second)
		b.stop(20 * time.Second)
		finish()
	case <-time.After(30 * time.Second):
		fail("producer never got halfway")
		a.stop(20 * time.Second)
		b.stop(20 * time.Second)
		finish()
	}
	b.stop(30 * time.Second)

	// 5. a takes over everything
	bothGen := s.BothGeneration
	waitFor("member a to hold every partition after b left", 45*time.Second, func() bool {
		ca, ga := a.snapshot()
		if ga > bothGen && fmt.Sprint(ca) == fmt.Sprint(all) {
			s.TakeoverClaims, s.TakeoverGen = ca, ga
			return true
		}
		return false
	})
	select {
	case err := <-prodDone:
		if err != nil {
			fail("producing during the run: %v", err)
		}
	case <-time.After(60 * time.Second):
		fail("producer did not finish")
	}
	if err := produceRange(producer, *before+*during, total, *keys, nil); err != nil {
		fail("%v", err)
	}

	// 6. everything consumed
	waitFor("every record to be consumed", 45*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range seen {
			if c == 0 {
				return false
			}
		}
		return true
	})
	// Let the final marks reach the offset manager before leaving.
	a.stop(30 * time.Second)

	mu.Lock()
	s.ConsumedBy["a"], s.ConsumedBy["b"] = a.consumed, b.consumed
	s.BConsumedAfterLeave = b.afterLeave
	for _, c := range seen {
		if c == 0 {
			s.Missing++
		} else {
			s.Unique++
			s.Duplicates += c - 1
		}
	}
	mu.Unlock()
	if s.Missing > 0 {
		fail("%d of %d records never consumed", s.Missing, total)
	}
	if len(s.Overlaps) > 0 {
		fail("%d partition claims overlapped", len(s.Overlaps))
	}
	if b.afterLeave > 0 {
		fail("member b consumed %d records after leaving", b.afterLeave)
	}

	// Committed offsets (OffsetFetch v1) must equal the high water marks: a
	// marked every message and committed on Close.
	for _, p := range all {
		hwm, err := client.GetOffset(*topic, p, sarama.OffsetNewest)
		if err != nil {
			fail("GetOffset p%d: %v", p, err)
			continue
		}
		s.HighWaterMarks[strconv.Itoa(int(p))] = hwm
	}
	resp, err := admin.ListConsumerGroupOffsets(*group, map[string][]int32{*topic: all})
	if err != nil {
		fail("ListConsumerGroupOffsets: %v", err)
	} else {
		for _, p := range all {
			blk := resp.GetBlock(*topic, p)
			if blk == nil {
				fail("OffsetFetch: no block for p%d", p)
				continue
			}
			if blk.Err != sarama.ErrNoError {
				fail("OffsetFetch p%d: %v", p, blk.Err)
			}
			s.Committed[strconv.Itoa(int(p))] = blk.Offset
			if hw := s.HighWaterMarks[strconv.Itoa(int(p))]; blk.Offset != hw {
				fail("p%d: committed offset %d, high water mark %d", p, blk.Offset, hw)
			}
		}
	}
	if descs, err := admin.DescribeConsumerGroups([]string{*group}); err != nil || len(descs) != 1 {
		fail("final DescribeConsumerGroups: %v", err)
	} else {
		s.FinalState = descs[0].State
		if descs[0].State != "Empty" || len(descs[0].Members) != 0 {
			fail("after both members left: state %q with %d members, want Empty with none", descs[0].State, len(descs[0].Members))
		}
	}
	finish()
}
