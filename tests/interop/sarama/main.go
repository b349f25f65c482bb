// Sarama interop check for Weir.
//
// Built in GOPATH mode against Debian's golang-github-shopify-sarama-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o sarama-interop .
//
// It creates a topic (ClusterAdmin.CreateTopic, or broker auto-creation with
// -create=false), produces -count keyed records with a SyncProducer
// (acks=all, hash partitioner), then reads every partition from the oldest
// offset up to its high water mark with a plain (group-less) Consumer and
// checks that every record arrived exactly once, in order, and that each key
// stayed on one partition. A JSON summary goes to stdout; the exit code is 0
// only when every check passed.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"log"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Shopify/sarama"
)

type summary struct {
	OK             bool             `json:"ok"`
	Topic          string           `json:"topic"`
	Partitions     int              `json:"partitions"`
	Produced       int              `json:"produced"`
	Consumed       int              `json:"consumed"`
	Unique         int              `json:"unique"`
	Duplicates     int              `json:"duplicates"`
	Missing        int              `json:"missing"`
	OrderErrors    int              `json:"order_errors"`
	KeySplits      int              `json:"key_splits"`
	OffsetErrors   int              `json:"offset_errors"`
	PerPartition   map[string]int   `json:"per_partition"`
	HighWaterMarks map[string]int64 `json:"high_water_marks"`
	Errors         []string         `json:"errors"`
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma separated bootstrap brokers")
	topic := flag.String("topic", "sarama-interop", "topic name")
	count := flag.Int("count", 1000, "number of records to produce")
	keys := flag.Int("keys", 37, "number of distinct keys")
	partitions := flag.Int("partitions", 3, "partitions to create")
	create := flag.Bool("create", true, "create the topic with ClusterAdmin (otherwise rely on auto-creation)")
	codec := flag.String("compression", "none", "none|gzip|snappy|lz4|zstd")
	timeout := flag.Duration("timeout", 60*time.Second, "overall deadline")
	verbose := flag.Bool("verbose", true, "log Sarama's client messages to stderr")
	replication := flag.Int("replication-factor", 1, "replication factor of the created topic")
	idempotent := flag.Bool("idempotent", false, "idempotent producer (one request in flight)")
	retries := flag.Int("retries", 10, "producer retries per record")
	pauseAfter := flag.Int("pause-after", -1, "after this many records, create <go-file>.ready and wait for <go-file> (the test injects a fault meanwhile)")
	goFile := flag.String("go-file", "", "see -pause-after")
	tlsCA := flag.String("tls-ca", "", "connect with TLS, trusting the CA certificates in this PEM file")
	saslUser := flag.String("sasl-user", "", "authenticate with SASL PLAIN as this user")
	saslPassword := flag.String("sasl-password", "", "see -sasl-user")
	flag.Parse()

	s := &summary{Topic: *topic, PerPartition: map[string]int{}, HighWaterMarks: map[string]int64{}, Errors: []string{}}
	fail := func(format string, a ...interface{}) {
		s.Errors = append(s.Errors, fmt.Sprintf(format, a...))
	}
	finish := func() {
		s.OK = len(s.Errors) == 0
		out, _ := json.Marshal(s)
		fmt.Println(string(out))
		if s.OK {
			os.Exit(0)
		}
		os.Exit(1)
	}
	// Never hang: the pytest side has its own timeout too, but make the
	// program bounded on its own.
	go func() {
		time.Sleep(*timeout)
		fail("overall timeout %s exceeded", *timeout)
		out, _ := json.Marshal(s)
		fmt.Println(string(out))
		os.Exit(2)
	}()

	if *verbose {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.LstdFlags|log.Lmicroseconds)
	}

	addrs := strings.Split(*brokers, ",")
	cfg := sarama.NewConfig()
	cfg.ClientID = "weir-sarama-interop"
	cfg.Version = sarama.V2_1_0_0
	cfg.Net.DialTimeout = 5 * time.Second
	cfg.Net.ReadTimeout = 10 * time.Second
	cfg.Net.WriteTimeout = 10 * time.Second
	cfg.Metadata.Retry.Max = 10
	cfg.Metadata.Retry.Backoff = 250 * time.Millisecond
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.Partitioner = sarama.NewHashPartitioner
	cfg.Producer.Retry.Max = *retries
	if *idempotent {
		cfg.Producer.Idempotent = true
		cfg.Net.MaxOpenRequests = 1
	}
	if *tlsCA != "" {
		pem, err := ioutil.ReadFile(*tlsCA)
		if err != nil {
			fail("read -tls-ca: %v", err)
			finish()
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			fail("no certificate in -tls-ca %s", *tlsCA)
			finish()
		}
		cfg.Net.TLS.Enable = true
		cfg.Net.TLS.Config = &tls.Config{RootCAs: roots}
	}
	if *saslUser != "" {
		// Sarama 1.22 sends SaslHandshake v0 and then the PLAIN token bare.
		cfg.Net.SASL.Enable = true
		cfg.Net.SASL.Handshake = true
		cfg.Net.SASL.User = *saslUser
		cfg.Net.SASL.Password = *saslPassword
	}
	cfg.Producer.Retry.Backoff = 250 * time.Millisecond
	cfg.Producer.Timeout = 10 * time.Second
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.MaxWaitTime = 250 * time.Millisecond
	switch *codec {
	case "none":
		cfg.Producer.Compression = sarama.CompressionNone
	case "gzip":
		cfg.Producer.Compression = sarama.CompressionGZIP
	case "snappy":
		cfg.Producer.Compression = sarama.CompressionSnappy
	case "lz4":
		cfg.Producer.Compression = sarama.CompressionLZ4
	case "zstd":
		cfg.Producer.Compression = sarama.CompressionZSTD
	default:
		fail("unknown compression %q", *codec)
		finish()
	}

	if *create {
		admin, err := sarama.NewClusterAdmin(addrs, cfg)
		if err != nil {
			fail("NewClusterAdmin: %v", err)
			finish()
		}
		err = admin.CreateTopic(*topic, &sarama.TopicDetail{NumPartitions: int32(*partitions), ReplicationFactor: int16(*replication)}, false)
		if err != nil {
			fail("CreateTopic: %v", err)
			_ = admin.Close()
			finish()
		}
		_ = admin.Close()
	}

	client, err := sarama.NewClient(addrs, cfg)
	if err != nil {
		fail("NewClient: %v", err)
		finish()
	}
	defer client.Close()

	// Wait for the topic to show up in metadata with its partitions
	// (auto-creation happens on this very request when -create=false).
	var parts []int32
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := client.RefreshMetadata(*topic); err == nil {
			parts, err = client.Partitions(*topic)
			if err == nil && len(parts) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			fail("topic %s never appeared in metadata (partitions=%v)", *topic, parts)
			finish()
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	s.Partitions = len(parts)
	if *create && len(parts) != *partitions {
		fail("expected %d partitions, metadata shows %d", *partitions, len(parts))
	}

	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		fail("NewSyncProducer: %v", err)
		finish()
	}
	// key -> partition chosen by the producer; (partition, offset) acked per i
	type ack struct {
		p int32
		o int64
	}
	acks := make([]ack, *count)
	keyPart := map[string]int32{}
	for i := 0; i < *count; i++ {
		if i == *pauseAfter && *goFile != "" {
			if err := os.WriteFile(*goFile+".ready", []byte("ready\n"), 0o644); err != nil {
				fail("writing %s.ready: %v", *goFile, err)
				finish()
			}
			for {
				if _, err := os.Stat(*goFile); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		key := fmt.Sprintf("k%d", i%*keys)
		msg := &sarama.ProducerMessage{
			Topic: *topic,
			Key:   sarama.StringEncoder(key),
			Value: sarama.StringEncoder(strconv.Itoa(i)),
		}
		p, o, err := producer.SendMessage(msg)
		if err != nil {
			fail("SendMessage %d: %v", i, err)
			_ = producer.Close()
			finish()
		}
		acks[i] = ack{p, o}
		if prev, ok := keyPart[key]; ok && prev != p {
			fail("producer sent key %s to partitions %d and %d", key, prev, p)
		}
		keyPart[key] = p
		s.Produced++
	}
	// Offsets acked within one partition must be strictly increasing.
	lastAck := map[int32]int64{}
	for i, a := range acks {
		if prev, ok := lastAck[a.p]; ok && a.o <= prev {
			s.OffsetErrors++
			if s.OffsetErrors <= 5 {
				fail("record %d acked at p%d offset %d, not after %d", i, a.p, a.o, prev)
			}
		}
		lastAck[a.p] = a.o
	}
	if err := producer.Close(); err != nil {
		fail("producer close: %v", err)
	}

	consumer, err := sarama.NewConsumer(addrs, cfg)
	if err != nil {
		fail("NewConsumer: %v", err)
		finish()
	}
	defer consumer.Close()

	seen := make([]int, *count)
	keyOn := map[string]int32{}
	for _, p := range parts {
		hwm, err := client.GetOffset(*topic, p, sarama.OffsetNewest)
		if err != nil {
			fail("GetOffset newest p%d: %v", p, err)
			continue
		}
		s.HighWaterMarks[strconv.Itoa(int(p))] = hwm
		if hwm <= 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(*topic, p, sarama.OffsetOldest)
		if err != nil {
			fail("ConsumePartition p%d: %v", p, err)
			continue
		}
		lastVal := map[string]int{}
		var lastOff int64 = -1
		n := 0
		timer := time.NewTimer(20 * time.Second)
	loop:
		for {
			select {
			case m := <-pc.Messages():
				n++
				if m.Offset <= lastOff {
					s.OffsetErrors++
					fail("p%d offset %d after %d", p, m.Offset, lastOff)
				}
				lastOff = m.Offset
				key := string(m.Key)
				v, err := strconv.Atoi(string(m.Value))
				if err != nil || v < 0 || v >= *count {
					fail("p%d offset %d: bad value %q", p, m.Offset, m.Value)
				} else {
					seen[v]++
					if want := fmt.Sprintf("k%d", v%*keys); want != key {
						fail("p%d offset %d: value %d has key %q, want %q", p, m.Offset, v, key, want)
					}
				}
				if prev, ok := lastVal[key]; ok && v <= prev {
					s.OrderErrors++
				}
				lastVal[key] = v
				if prev, ok := keyOn[key]; ok && prev != p {
					s.KeySplits++
				}
				keyOn[key] = p
				if m.Offset+1 >= hwm {
					break loop
				}
			case cerr := <-pc.Errors():
				fail("consume p%d: %v", p, cerr)
				break loop
			case <-timer.C:
				fail("p%d: timed out at offset %d of high water mark %d", p, lastOff, hwm)
				break loop
			}
		}
		timer.Stop()
		_ = pc.Close()
		s.PerPartition[strconv.Itoa(int(p))] = n
		s.Consumed += n
	}

	for _, c := range seen {
		if c == 0 {
			s.Missing++
		} else {
			s.Unique++
			if c > 1 {
				s.Duplicates += c - 1
			}
		}
	}
	if s.Missing > 0 {
		fail("%d records missing", s.Missing)
	}
	if s.Duplicates > 0 {
		fail("%d duplicate records", s.Duplicates)
	}
	if s.OrderErrors > 0 {
		fail("%d per-key order violations", s.OrderErrors)
	}
	if s.KeySplits > 0 {
		fail("%d keys seen on more than one partition", s.KeySplits)
	}
	if s.Consumed != *count {
		fail("consumed %d records, produced %d", s.Consumed, *count)
	}
	finish()
}
