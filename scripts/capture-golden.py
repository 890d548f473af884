#!/usr/bin/env python3
"""Record the exact request bytes that real Kafka clients send: golden fixtures.

A tiny fake Kafka broker (pure stdlib: socket/struct/threading/json) listens on
127.0.0.1:<free port> and answers just enough of the protocol -- ApiVersions,
Metadata, Produce, Fetch, ListOffsets, InitProducerId, FindCoordinator -- for
real clients to produce records and fetch them back.  Every request frame a
client sends is recorded byte for byte (4-byte size prefix included) and
written to protocol/tests/fixtures/golden/<run>/<NN>-<api>-v<version>.bin,
together with manifest.json describing what each frame must decode to.

The clients (librdkafka via confluent-kafka, kafka-python, aiokafka, kcat) are
driven one run at a time, each against a fresh broker; each client run happens
in a child process (``capture-golden.py --child ...``) so that one client's
background threads cannot disturb the next run.  A run only counts when every
delivery report is OK and the consumer reads back exactly what was produced:
that proves the fake answers were accepted and the recorded bytes are sane.

Usage:  python3 scripts/capture-golden.py [--out DIR] [-v]   (--only RUN... --out SCRATCH to debug one run)
Exit status is non-zero if any client run fails or any cross-check fails.

Field layouts below are transcribed from Apache Kafka's message specs
(clients/src/main/resources/common/message/*.json); the schema tables keep
only what the codec needs.  Needs the clients installed:
    pip install confluent-kafka kafka-python aiokafka cramjam
    apt-get install -y kcat
(cramjam is only used to double-check snappy/lz4/zstd batches; without it the
consume-back check still runs.)
"""

import argparse
import datetime
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import uuid
import zlib

TOPIC = "golden"
TOPIC_ID = uuid.UUID("5e1e0000-601d-4000-8000-00000000f1c5").bytes  # non-zero, fixed
CLUSTER_ID = "SteleGoldenFixtures000"
NODE_ID = 1
FIRST_PRODUCER_ID = 1000
BASE_TS = 1700000000000  # record i gets timestamp BASE_TS + i (where the client lets us)

# What every producer is asked to send (kcat sends only the first record).
RECORDS = [
    {"key": "k0", "value": "v0", "headers": [], "timestamp": BASE_TS + 0},
    {"key": "k1", "value": "v1", "headers": [{"key": "h", "value": "x"}], "timestamp": BASE_TS + 1},
    {"key": "k2", "value": "v2", "headers": [], "timestamp": BASE_TS + 2},
]
KCAT_RECORDS = [{"key": "k0", "value": "v0", "headers": [{"key": "h", "value": "x"}], "timestamp": None}]
# librdkafka and kafka-python send a batch uncompressed when compressing does
# not make it smaller, which is always the case for "v0".  Runs with a codec
# therefore use a compressible value: "v0" repeated 32 times (64 bytes).
CODEC_RECORDS = [dict(r, value=r["value"] * 32) for r in RECORDS]
# What a batch header carries when the producer is not idempotent: Kafka's
# Java client writes -1/-1/-1; aiokafka writes base sequence 0.
NON_IDEMPOTENT_BASE_SEQUENCE = {"aiokafka": 0}

# Client configuration shared by every run; the manifest's acks/timeout/fetch
# limits come from here and are checked against what the client really sent.
PRODUCER_CLIENT_ID = "golden-producer"
CONSUMER_CLIENT_ID = "golden-consumer"
ACKS = -1                     # "all"
PRODUCE_TIMEOUT_MS = 10000    # request.timeout.ms / request_timeout_ms
FETCH_MAX_WAIT_MS = 100
FETCH_MIN_BYTES = 1
FETCH_MAX_BYTES = 2097152
PARTITION_MAX_BYTES = 1048576

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

# ---------------------------------------------------------------------------
# Schema-driven codec for the Kafka message specs
# ---------------------------------------------------------------------------


def _vrange(s):
    """'3+' -> (3, None), '0-12' -> (0, 12), '0' -> (0, 0), None/'none' -> None."""
    if s is None or s == "none":
        return None
    if s.endswith("+"):
        return (int(s[:-1]), None)
    if "-" in s:
        lo, hi = s.split("-")
        return (int(lo), int(hi))
    return (int(s), int(s))


def _vin(v, r):
    return r is not None and v >= r[0] and (r[1] is None or v <= r[1])


class F:
    def __init__(self, name, type_, versions, nullable=None, tag=None, tagged=None, flexible=None, fields=None):
        self.name, self.type = name, type_
        self.versions = _vrange(versions)
        self.nullable = _vrange(nullable)
        self.tag = tag
        self.tagged = _vrange(tagged)
        self.flexible = flexible  # only 'none' is used (RequestHeader.ClientId)
        self.fields = fields or []


class M:
    def __init__(self, api_key, flexible, fields):
        self.api_key = api_key
        self.flexible = _vrange(flexible)
        self.fields = fields

    def is_flexible(self, v):
        return _vin(v, self.flexible)


PRIMS = {"int8": "b", "int16": "h", "int32": "i", "int64": "q", "uint16": "H", "float64": "d", "bool": "?"}

API_VERSIONS_REQUEST = M(18, '3+', [
    F('ClientSoftwareName', 'string', '3+'),
    F('ClientSoftwareVersion', 'string', '3+'),
])

API_VERSIONS_RESPONSE = M(18, '3+', [
    F('ErrorCode', 'int16', '0+'),
    F('ApiKeys', '[]ApiVersion', '0+', fields=[
        F('ApiKey', 'int16', '0+'),
        F('MinVersion', 'int16', '0+'),
        F('MaxVersion', 'int16', '0+'),
    ]),
    F('ThrottleTimeMs', 'int32', '1+'),
    F('SupportedFeatures', '[]SupportedFeatureKey', '3+', tag=0, tagged='3+', fields=[
        F('Name', 'string', '3+'),
        F('MinVersion', 'int16', '3+'),
        F('MaxVersion', 'int16', '3+'),
    ]),
    F('FinalizedFeaturesEpoch', 'int64', '3+', tag=1, tagged='3+'),
    F('FinalizedFeatures', '[]FinalizedFeatureKey', '3+', tag=2, tagged='3+', fields=[
        F('Name', 'string', '3+'),
        F('MaxVersionLevel', 'int16', '3+'),
        F('MinVersionLevel', 'int16', '3+'),
    ]),
    F('ZkMigrationReady', 'bool', '3+', tag=3, tagged='3+'),
])

METADATA_REQUEST = M(3, '9+', [
    F('Topics', '[]MetadataRequestTopic', '0+', nullable='1+', fields=[
        F('TopicId', 'uuid', '10+'),
        F('Name', 'string', '0+', nullable='10+'),
    ]),
    F('AllowAutoTopicCreation', 'bool', '4+'),
    F('IncludeClusterAuthorizedOperations', 'bool', '8-10'),
    F('IncludeTopicAuthorizedOperations', 'bool', '8+'),
])

METADATA_RESPONSE = M(3, '9+', [
    F('ThrottleTimeMs', 'int32', '3+'),
    F('Brokers', '[]MetadataResponseBroker', '0+', fields=[
        F('NodeId', 'int32', '0+'),
        F('Host', 'string', '0+'),
        F('Port', 'int32', '0+'),
        F('Rack', 'string', '1+', nullable='1+'),
    ]),
    F('ClusterId', 'string', '2+', nullable='2+'),
    F('ControllerId', 'int32', '1+'),
    F('Topics', '[]MetadataResponseTopic', '0+', fields=[
        F('ErrorCode', 'int16', '0+'),
        F('Name', 'string', '0+', nullable='12+'),
        F('TopicId', 'uuid', '10+'),
        F('IsInternal', 'bool', '1+'),
        F('Partitions', '[]MetadataResponsePartition', '0+', fields=[
            F('ErrorCode', 'int16', '0+'),
            F('PartitionIndex', 'int32', '0+'),
            F('LeaderId', 'int32', '0+'),
            F('LeaderEpoch', 'int32', '7+'),
            F('ReplicaNodes', '[]int32', '0+'),
            F('IsrNodes', '[]int32', '0+'),
            F('OfflineReplicas', '[]int32', '5+'),
        ]),
        F('TopicAuthorizedOperations', 'int32', '8+'),
    ]),
    F('ClusterAuthorizedOperations', 'int32', '8-10'),
    F('ErrorCode', 'int16', '13+'),
])

PRODUCE_REQUEST = M(0, '9+', [
    F('TransactionalId', 'string', '3+', nullable='3+'),
    F('Acks', 'int16', '0+'),
    F('TimeoutMs', 'int32', '0+'),
    F('TopicData', '[]TopicProduceData', '0+', fields=[
        F('Name', 'string', '0-12'),
        F('TopicId', 'uuid', '13+'),
        F('PartitionData', '[]PartitionProduceData', '0+', fields=[
            F('Index', 'int32', '0+'),
            F('Records', 'records', '0+', nullable='0+'),
        ]),
    ]),
])

PRODUCE_RESPONSE = M(0, '9+', [
    F('Responses', '[]TopicProduceResponse', '0+', fields=[
        F('Name', 'string', '0-12'),
        F('TopicId', 'uuid', '13+'),
        F('PartitionResponses', '[]PartitionProduceResponse', '0+', fields=[
            F('Index', 'int32', '0+'),
            F('ErrorCode', 'int16', '0+'),
            F('BaseOffset', 'int64', '0+'),
            F('LogAppendTimeMs', 'int64', '2+'),
            F('LogStartOffset', 'int64', '5+'),
            F('RecordErrors', '[]BatchIndexAndErrorMessage', '8+', fields=[
                F('BatchIndex', 'int32', '8+'),
                F('BatchIndexErrorMessage', 'string', '8+', nullable='8+'),
            ]),
            F('ErrorMessage', 'string', '8+', nullable='8+'),
            F('CurrentLeader', 'LeaderIdAndEpoch', '10+', tag=0, tagged='10+', fields=[
                F('LeaderId', 'int32', '10+'),
                F('LeaderEpoch', 'int32', '10+'),
            ]),
        ]),
    ]),
    F('ThrottleTimeMs', 'int32', '1+'),
    F('NodeEndpoints', '[]NodeEndpoint', '10+', tag=0, tagged='10+', fields=[
        F('NodeId', 'int32', '10+'),
        F('Host', 'string', '10+'),
        F('Port', 'int32', '10+'),
        F('Rack', 'string', '10+', nullable='10+'),
    ]),
])

FETCH_REQUEST = M(1, '12+', [
    F('ClusterId', 'string', '12+', nullable='12+', tag=0, tagged='12+'),
    F('ReplicaId', 'int32', '0-14'),
    F('ReplicaState', 'ReplicaState', '15+', tag=1, tagged='15+', fields=[
        F('ReplicaId', 'int32', '15+'),
        F('ReplicaEpoch', 'int64', '15+'),
    ]),
    F('MaxWaitMs', 'int32', '0+'),
    F('MinBytes', 'int32', '0+'),
    F('MaxBytes', 'int32', '3+'),
    F('IsolationLevel', 'int8', '4+'),
    F('SessionId', 'int32', '7+'),
    F('SessionEpoch', 'int32', '7+'),
    F('Topics', '[]FetchTopic', '0+', fields=[
        F('Topic', 'string', '0-12'),
        F('TopicId', 'uuid', '13+'),
        F('Partitions', '[]FetchPartition', '0+', fields=[
            F('Partition', 'int32', '0+'),
            F('CurrentLeaderEpoch', 'int32', '9+'),
            F('FetchOffset', 'int64', '0+'),
            F('LastFetchedEpoch', 'int32', '12+'),
            F('LogStartOffset', 'int64', '5+'),
            F('PartitionMaxBytes', 'int32', '0+'),
            F('ReplicaDirectoryId', 'uuid', '17+', tag=0, tagged='17+'),
            F('HighWatermark', 'int64', '18+', tag=1, tagged='18+'),
        ]),
    ]),
    F('ForgottenTopicsData', '[]ForgottenTopic', '7+', fields=[
        F('Topic', 'string', '7-12'),
        F('TopicId', 'uuid', '13+'),
        F('Partitions', '[]int32', '7+'),
    ]),
    F('RackId', 'string', '11+'),
])

FETCH_RESPONSE = M(1, '12+', [
    F('ThrottleTimeMs', 'int32', '1+'),
    F('ErrorCode', 'int16', '7+'),
    F('SessionId', 'int32', '7+'),
    F('Responses', '[]FetchableTopicResponse', '0+', fields=[
        F('Topic', 'string', '0-12'),
        F('TopicId', 'uuid', '13+'),
        F('Partitions', '[]PartitionData', '0+', fields=[
            F('PartitionIndex', 'int32', '0+'),
            F('ErrorCode', 'int16', '0+'),
            F('HighWatermark', 'int64', '0+'),
            F('LastStableOffset', 'int64', '4+'),
            F('LogStartOffset', 'int64', '5+'),
            F('DivergingEpoch', 'EpochEndOffset', '12+', tag=0, tagged='12+', fields=[
                F('Epoch', 'int32', '12+'),
                F('EndOffset', 'int64', '12+'),
            ]),
            F('CurrentLeader', 'LeaderIdAndEpoch', '12+', tag=1, tagged='12+', fields=[
                F('LeaderId', 'int32', '12+'),
                F('LeaderEpoch', 'int32', '12+'),
            ]),
            F('SnapshotId', 'SnapshotId', '12+', tag=2, tagged='12+', fields=[
                F('EndOffset', 'int64', '0+'),
                F('Epoch', 'int32', '0+'),
            ]),
            F('AbortedTransactions', '[]AbortedTransaction', '4+', nullable='4+', fields=[
                F('ProducerId', 'int64', '4+'),
                F('FirstOffset', 'int64', '4+'),
            ]),
            F('PreferredReadReplica', 'int32', '11+'),
            F('Records', 'records', '0+', nullable='0+'),
        ]),
    ]),
    F('NodeEndpoints', '[]NodeEndpoint', '16+', tag=0, tagged='16+', fields=[
        F('NodeId', 'int32', '16+'),
        F('Host', 'string', '16+'),
        F('Port', 'int32', '16+'),
        F('Rack', 'string', '16+', nullable='16+'),
    ]),
])

LIST_OFFSETS_REQUEST = M(2, '6+', [
    F('ReplicaId', 'int32', '0+'),
    F('IsolationLevel', 'int8', '2+'),
    F('Topics', '[]ListOffsetsTopic', '0+', fields=[
        F('Name', 'string', '0+'),
        F('Partitions', '[]ListOffsetsPartition', '0+', fields=[
            F('PartitionIndex', 'int32', '0+'),
            F('CurrentLeaderEpoch', 'int32', '4+'),
            F('Timestamp', 'int64', '0+'),
            F('MaxNumOffsets', 'int32', '0'),
        ]),
    ]),
    F('TimeoutMs', 'int32', '10+'),
])

LIST_OFFSETS_RESPONSE = M(2, '6+', [
    F('ThrottleTimeMs', 'int32', '2+'),
    F('Topics', '[]ListOffsetsTopicResponse', '0+', fields=[
        F('Name', 'string', '0+'),
        F('Partitions', '[]ListOffsetsPartitionResponse', '0+', fields=[
            F('PartitionIndex', 'int32', '0+'),
            F('ErrorCode', 'int16', '0+'),
            F('OldStyleOffsets', '[]int64', '0'),
            F('Timestamp', 'int64', '1+'),
            F('Offset', 'int64', '1+'),
            F('LeaderEpoch', 'int32', '4+'),
        ]),
    ]),
])

INIT_PRODUCER_ID_REQUEST = M(22, '2+', [
    F('TransactionalId', 'string', '0+', nullable='0+'),
    F('TransactionTimeoutMs', 'int32', '0+'),
    F('ProducerId', 'int64', '3+'),
    F('ProducerEpoch', 'int16', '3+'),
    F('Enable2Pc', 'bool', '6+'),
    F('KeepPreparedTxn', 'bool', '6+'),
])

INIT_PRODUCER_ID_RESPONSE = M(22, '2+', [
    F('ThrottleTimeMs', 'int32', '0+'),
    F('ErrorCode', 'int16', '0+'),
    F('ProducerId', 'int64', '0+'),
    F('ProducerEpoch', 'int16', '0+'),
    F('OngoingTxnProducerId', 'int64', '6+'),
    F('OngoingTxnProducerEpoch', 'int16', '6+'),
])

FIND_COORDINATOR_REQUEST = M(10, '3+', [
    F('Key', 'string', '0-3'),
    F('KeyType', 'int8', '1+'),
    F('CoordinatorKeys', '[]string', '4+'),
])

FIND_COORDINATOR_RESPONSE = M(10, '3+', [
    F('ThrottleTimeMs', 'int32', '1+'),
    F('ErrorCode', 'int16', '0-3'),
    F('ErrorMessage', 'string', '1-3', nullable='1-3'),
    F('NodeId', 'int32', '0-3'),
    F('Host', 'string', '0-3'),
    F('Port', 'int32', '0-3'),
    F('Coordinators', '[]Coordinator', '4+', fields=[
        F('Key', 'string', '4+'),
        F('NodeId', 'int32', '4+'),
        F('Host', 'string', '4+'),
        F('Port', 'int32', '4+'),
        F('ErrorCode', 'int16', '4+'),
        F('ErrorMessage', 'string', '4+', nullable='4+'),
    ]),
])

# api_key -> (Name, file name, request schema, response schema)
APIS = {
    0: ("Produce", "produce", PRODUCE_REQUEST, PRODUCE_RESPONSE),
    1: ("Fetch", "fetch", FETCH_REQUEST, FETCH_RESPONSE),
    2: ("ListOffsets", "list_offsets", LIST_OFFSETS_REQUEST, LIST_OFFSETS_RESPONSE),
    3: ("Metadata", "metadata", METADATA_REQUEST, METADATA_RESPONSE),
    10: ("FindCoordinator", "find_coordinator", FIND_COORDINATOR_REQUEST, FIND_COORDINATOR_RESPONSE),
    18: ("ApiVersions", "api_versions", API_VERSIONS_REQUEST, API_VERSIONS_RESPONSE),
    22: ("InitProducerId", "init_producer_id", INIT_PRODUCER_ID_REQUEST, INIT_PRODUCER_ID_RESPONSE),
}

# Advertised version ranges.  "flexible" offers everything the codec above
# implements (Produce/Fetch start at 3/4: record batches v2 only; InitProducerId
# stops at 5 because Kafka marks v6 unstable).  "legacy" caps every API below
# its first flexible version so the same clients fall back to the old
# non-flexible encodings (and ApiVersions v3 is refused, exercising the retry).
PROFILES = {
    "flexible": {18: (0, 3), 3: (0, 13), 0: (3, 13), 1: (4, 18), 2: (1, 11), 22: (0, 5), 10: (0, 6)},
    "legacy": {18: (0, 2), 3: (0, 8), 0: (3, 8), 1: (4, 11), 2: (1, 5), 22: (0, 1), 10: (0, 2)},
}


class Reader:
    def __init__(self, data, pos=0):
        self.d, self.p = data, pos

    def take(self, n):
        if self.p + n > len(self.d):
            raise ValueError("truncated: need %d bytes at %d of %d" % (n, self.p, len(self.d)))
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def unpack(self, fmt):
        fmt = ">" + fmt
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def uvarint(self):
        shift = result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def varint(self):  # zigzag
        u = self.uvarint()
        return (u >> 1) ^ -(u & 1)

    def remaining(self):
        return len(self.d) - self.p


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n):  # zigzag
    return uvarint((n << 1) ^ (n >> 63))


def _default(f, v):
    if _vin(v, f.nullable):
        return None
    t = f.type
    if t.startswith("[]"):
        return []
    if t in PRIMS:
        return False if t == "bool" else 0
    if t == "string":
        return ""
    if t in ("bytes", "records"):
        return b""
    if t == "uuid":
        return bytes(16)
    return {}


def _enc_prim(t, x, flex, nullable, out):
    if t in PRIMS:
        out += struct.pack(">" + PRIMS[t], x)
    elif t == "uuid":
        assert len(x) == 16
        out += x
    elif t == "string":
        if x is None:
            assert nullable
            out += uvarint(0) if flex else struct.pack(">h", -1)
        else:
            b = x.encode()
            out += (uvarint(len(b) + 1) if flex else struct.pack(">h", len(b))) + b
    elif t in ("bytes", "records"):
        if x is None:
            assert nullable
            out += uvarint(0) if flex else struct.pack(">i", -1)
        else:
            out += (uvarint(len(x) + 1) if flex else struct.pack(">i", len(x))) + x
    else:
        raise ValueError("unknown type " + t)


def _enc_value(f, x, v, flex, out):
    nullable = _vin(v, f.nullable)
    if f.type.startswith("[]"):
        et = f.type[2:]
        if x is None:
            assert nullable, f.name
            out += uvarint(0) if flex else struct.pack(">i", -1)
            return
        out += uvarint(len(x) + 1) if flex else struct.pack(">i", len(x))
        for item in x:
            if f.fields:
                _enc_struct(f.fields, item, v, flex, out)
            else:
                _enc_prim(et, item, flex, False, out)
    elif f.fields:
        _enc_struct(f.fields, x, v, flex, out)
    else:
        _enc_prim(f.type, x, flex, nullable, out)


def _enc_struct(fields, obj, v, flex, out):
    tagged = []
    for f in fields:
        if not _vin(v, f.versions):
            continue
        if f.tag is not None and _vin(v, f.tagged):
            if flex and obj.get(f.name) is not None:
                tagged.append(f)
            continue
        x = obj[f.name] if f.name in obj else _default(f, v)
        _enc_value(f, x, v, flex and f.flexible != "none", out)
    if flex:
        out += uvarint(len(tagged))
        for f in sorted(tagged, key=lambda f: f.tag):
            buf = bytearray()
            _enc_value(f, obj[f.name], v, True, buf)
            out += uvarint(f.tag) + uvarint(len(buf)) + buf


def encode(schema, obj, v):
    out = bytearray()
    _enc_struct(schema.fields, obj, v, schema.is_flexible(v), out)
    return bytes(out)


def _dec_prim(t, r, flex, nullable):
    if t in PRIMS:
        return r.unpack(PRIMS[t])
    if t == "uuid":
        return r.take(16)
    if t == "string":
        n = (r.uvarint() - 1) if flex else r.unpack("h")
        if n < 0:
            assert nullable, "null string in non-nullable field"
            return None
        return r.take(n).decode()
    if t in ("bytes", "records"):
        n = (r.uvarint() - 1) if flex else r.unpack("i")
        if n < 0:
            assert nullable, "null bytes in non-nullable field"
            return None
        return r.take(n)
    raise ValueError("unknown type " + t)


def _dec_value(f, r, v, flex):
    nullable = _vin(v, f.nullable)
    if f.type.startswith("[]"):
        n = (r.uvarint() - 1) if flex else r.unpack("i")
        if n < 0:
            assert nullable, "null array in non-nullable " + f.name
            return None
        if f.fields:
            return [_dec_struct(f.fields, r, v, flex) for _ in range(n)]
        return [_dec_prim(f.type[2:], r, flex, False) for _ in range(n)]
    if f.fields:
        return _dec_struct(f.fields, r, v, flex)
    return _dec_prim(f.type, r, flex, nullable)


def _dec_struct(fields, r, v, flex):
    obj, by_tag = {}, {}
    for f in fields:
        if not _vin(v, f.versions):
            continue
        if f.tag is not None and _vin(v, f.tagged):
            by_tag[f.tag] = f
            continue
        obj[f.name] = _dec_value(f, r, v, flex and f.flexible != "none")
    if flex:
        for _ in range(r.uvarint()):
            tag, size = r.uvarint(), r.uvarint()
            raw = r.take(size)
            if tag in by_tag:
                sub = Reader(raw)
                obj[by_tag[tag].name] = _dec_value(by_tag[tag], sub, v, True)
                assert sub.remaining() == 0, "tagged field size mismatch"
            else:
                obj.setdefault("_unknown_tags", {})[tag] = raw.hex()
    return obj


def decode(schema, data, v):
    r = Reader(data)
    obj = _dec_struct(schema.fields, r, v, schema.is_flexible(v))
    if r.remaining():
        raise ValueError("%d trailing bytes after %s v%d body" % (r.remaining(), APIS[schema.api_key][0], v))
    return obj


def request_header_version(api_key, api_version):
    return 2 if APIS[api_key][2].is_flexible(api_version) else 1


def parse_request(frame):
    """frame = size prefix + request.  Returns (header dict, body bytes)."""
    size = struct.unpack(">i", frame[:4])[0]
    assert size == len(frame) - 4, "size prefix %d != %d" % (size, len(frame) - 4)
    r = Reader(frame, 4)
    api_key, api_version, corr = r.unpack("h"), r.unpack("h"), r.unpack("i")
    n = r.unpack("h")
    client_id = None if n < 0 else r.take(n).decode()
    hv = request_header_version(api_key, api_version) if api_key in APIS else 1
    header = {"api_key": api_key, "api_version": api_version, "correlation_id": corr,
              "client_id": client_id, "header_version": hv}
    if hv >= 2:
        tags = {}
        for _ in range(r.uvarint()):
            tag, sz = r.uvarint(), r.uvarint()
            tags[tag] = r.take(sz).hex()
        header["tagged_fields"] = tags
    return header, frame[r.p:]


# ---------------------------------------------------------------------------
# Record batches (magic 2)
# ---------------------------------------------------------------------------

def _crc32c_table():
    tbl = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        tbl.append(c)
    return tbl


_CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def split_batches(blob):
    """Split a records blob into batch dicts (header fields + raw bytes)."""
    out, pos = [], 0
    while pos < len(blob):
        if len(blob) - pos < 61:
            raise ValueError("partial batch header")
        (base_offset, length, leader_epoch, magic, crc, attrs, last_delta, base_ts, max_ts,
         pid, pepoch, bseq, count) = struct.unpack(">qiibIhiqqqhii", blob[pos:pos + 61])
        end = pos + 12 + length
        if magic != 2:
            raise ValueError("magic %d record batch" % magic)
        raw = blob[pos:end]
        if len(raw) != 12 + length:
            raise ValueError("truncated batch")
        out.append({
            "base_offset": base_offset, "batch_length": length, "partition_leader_epoch": leader_epoch,
            "magic": magic, "crc": crc, "crc_ok": crc32c(raw[21:]) == crc, "attributes": attrs,
            "codec": CODECS.get(attrs & 7, "unknown-%d" % (attrs & 7)),
            "transactional": bool(attrs & 0x10), "control": bool(attrs & 0x20),
            "last_offset_delta": last_delta, "base_timestamp": base_ts, "max_timestamp": max_ts,
            "producer_id": pid, "producer_epoch": pepoch, "base_sequence": bseq,
            "record_count": count, "raw": raw,
        })
        pos = end
    return out


def _decompress(codec, data):
    """Returns decompressed bytes, or None when no decoder is available."""
    if codec == "none":
        return data
    if codec == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    try:
        import cramjam  # optional, only for the cross-check
    except ImportError:
        return None
    if codec == "snappy":
        if data[:8] == b"\x82SNAPPY\x00":  # xerial framing (Java client style)
            out, pos = bytearray(), 16
            while pos < len(data):
                n = struct.unpack(">i", data[pos:pos + 4])[0]
                out += bytes(cramjam.snappy.decompress_raw(data[pos + 4:pos + 4 + n]))
                pos += 4 + n
            return bytes(out)
        return bytes(cramjam.snappy.decompress_raw(data))
    if codec == "lz4":
        return bytes(cramjam.lz4.decompress(data))
    if codec == "zstd":
        return bytes(cramjam.zstd.decompress(data))
    return None


def decode_records(batch):
    """Records of one batch as [{key, value, headers, timestamp, offset_delta}], or None."""
    payload = _decompress(batch["codec"], batch["raw"][61:])
    if payload is None:
        return None
    r, recs = Reader(payload), []
    for _ in range(batch["record_count"]):
        length = r.varint()
        start = r.p
        r.take(1)  # attributes
        ts_delta, off_delta = r.varint(), r.varint()
        kl = r.varint()
        key = None if kl < 0 else r.take(kl)
        vl = r.varint()
        value = None if vl < 0 else r.take(vl)
        headers = []
        for _ in range(r.varint()):
            hk = r.take(r.varint()).decode()
            hl = r.varint()
            headers.append({"key": hk, "value": None if hl < 0 else r.take(hl).decode()})
        assert r.p - start == length, "record length mismatch"
        recs.append({"key": None if key is None else key.decode(),
                     "value": None if value is None else value.decode(),
                     "headers": headers, "timestamp": batch["base_timestamp"] + ts_delta,
                     "offset_delta": off_delta})
    assert r.remaining() == 0, "trailing bytes after records"
    return recs


# ---------------------------------------------------------------------------
# The fake broker
# ---------------------------------------------------------------------------

class FakeBroker:
    def __init__(self, profile, verbose=False):
        self.ranges = PROFILES[profile]
        self.verbose = verbose
        self.lock = threading.Lock()
        self.frames = []        # (arrival index, frame bytes, response error code or None)
        self.errors = []
        self.log = []           # stored batches (offsets rewritten)
        self.next_offset = 0
        self.next_pid = FIRST_PRODUCER_ID
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closing = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self.conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    def _accept(self):
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_exact(conn, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _serve(self, conn):
        try:
            while True:
                prefix = self._read_exact(conn, 4)
                if prefix is None:
                    return
                size = struct.unpack(">i", prefix)[0]
                body = self._read_exact(conn, size)
                if body is None:
                    return
                frame = prefix + body
                with self.lock:
                    idx = len(self.frames)
                    self.frames.append([idx, frame, None])
                resp = self._handle(idx, frame)
                if resp is not None:
                    conn.sendall(struct.pack(">i", len(resp)) + resp)
        except (ConnectionError, OSError):
            return
        except Exception as e:  # a bug here must fail the run, not hang it
            self.errors.append("%s\n%s" % (e, traceback.format_exc()))
            try:
                conn.close()
            except OSError:
                pass

    def _handle(self, idx, frame):
        header, body = parse_request(frame)
        key, ver, corr = header["api_key"], header["api_version"], header["correlation_id"]
        if self.verbose:
            print("  <- %s v%d corr=%d client=%s" % (APIS.get(key, ("api%d" % key,))[0], ver, corr,
                                                      header["client_id"]), file=sys.stderr)
        if key not in APIS or key not in self.ranges:
            raise ValueError("request for API %d that we did not advertise" % key)
        lo, hi = self.ranges[key]
        if key == 18 and ver > hi:
            # Kafka answers an ApiVersions version it does not know with a v0
            # body: UNSUPPORTED_VERSION plus the supported list.
            self.frames[idx][2] = 35
            return struct.pack(">i", corr) + encode(API_VERSIONS_RESPONSE, self._api_versions_body(35), 0)
        if not lo <= ver <= hi:
            raise ValueError("%s v%d outside advertised %d-%d" % (APIS[key][0], ver, lo, hi))
        name, _, req_schema, resp_schema = APIS[key]
        req = decode(req_schema, body, ver)
        handler = getattr(self, "_h_" + APIS[key][1])
        resp = handler(req, ver)
        if resp is None:  # acks=0
            return None
        # ApiVersions responses always use response header v0 (KIP-511).
        flexible_header = resp_schema.is_flexible(ver) and key != 18
        head = struct.pack(">i", corr) + (b"\x00" if flexible_header else b"")
        return head + encode(resp_schema, resp, ver)

    def _api_versions_body(self, error):
        return {"ErrorCode": error, "ThrottleTimeMs": 0,
                "ApiKeys": [{"ApiKey": k, "MinVersion": lo, "MaxVersion": hi}
                            for k, (lo, hi) in sorted(self.ranges.items())]}

    def _h_api_versions(self, req, v):
        return self._api_versions_body(0)

    def _topic_meta(self, v):
        return {"ErrorCode": 0, "Name": TOPIC, "TopicId": TOPIC_ID, "IsInternal": False,
                "TopicAuthorizedOperations": -2147483648,
                "Partitions": [{"ErrorCode": 0, "PartitionIndex": 0, "LeaderId": NODE_ID, "LeaderEpoch": 0,
                                "ReplicaNodes": [NODE_ID], "IsrNodes": [NODE_ID], "OfflineReplicas": []}]}

    def _h_metadata(self, req, v):
        topics = req["Topics"]
        out = []
        if topics is None or (v == 0 and not topics):
            out.append(self._topic_meta(v))
        else:
            for t in topics:
                if t.get("Name") == TOPIC or t.get("TopicId") == TOPIC_ID:
                    out.append(self._topic_meta(v))
                else:
                    out.append({"ErrorCode": 3, "Name": t.get("Name"), "TopicId": bytes(16), "IsInternal": False,
                                "Partitions": [], "TopicAuthorizedOperations": -2147483648})
        return {"ThrottleTimeMs": 0, "ClusterId": CLUSTER_ID, "ControllerId": NODE_ID, "ErrorCode": 0,
                "ClusterAuthorizedOperations": -2147483648,
                "Brokers": [{"NodeId": NODE_ID, "Host": "127.0.0.1", "Port": self.port, "Rack": None}],
                "Topics": out}

    def _h_init_producer_id(self, req, v):
        with self.lock:
            pid = self.next_pid
            self.next_pid += 1
        return {"ThrottleTimeMs": 0, "ErrorCode": 0, "ProducerId": pid, "ProducerEpoch": 0,
                "OngoingTxnProducerId": -1, "OngoingTxnProducerEpoch": -1}

    def _h_find_coordinator(self, req, v):
        keys = req.get("CoordinatorKeys") or [req.get("Key", "")]
        return {"ThrottleTimeMs": 0, "ErrorCode": 0, "ErrorMessage": None, "NodeId": NODE_ID,
                "Host": "127.0.0.1", "Port": self.port,
                "Coordinators": [{"Key": k, "NodeId": NODE_ID, "Host": "127.0.0.1", "Port": self.port,
                                  "ErrorCode": 0, "ErrorMessage": None} for k in keys]}

    def _is_golden(self, t, name_field):
        return t.get(name_field) == TOPIC or t.get("TopicId") == TOPIC_ID

    def _h_produce(self, req, v):
        responses = []
        for t in req["TopicData"]:
            parts = []
            for p in t["PartitionData"]:
                pr = {"Index": p["Index"], "ErrorCode": 0, "BaseOffset": -1, "LogAppendTimeMs": -1,
                      "LogStartOffset": 0, "RecordErrors": [], "ErrorMessage": None}
                if not self._is_golden(t, "Name") or p["Index"] != 0:
                    pr["ErrorCode"] = 3
                else:
                    batches = split_batches(p["Records"] or b"")
                    with self.lock:
                        pr["BaseOffset"] = self.next_offset
                        for b in batches:
                            raw = bytearray(b["raw"])
                            # baseOffset and partitionLeaderEpoch are outside the CRC
                            struct.pack_into(">q", raw, 0, self.next_offset)
                            struct.pack_into(">i", raw, 12, 0)
                            self.log.append((self.next_offset, self.next_offset + b["last_offset_delta"],
                                             bytes(raw)))
                            self.next_offset += b["last_offset_delta"] + 1
                parts.append(pr)
            responses.append({"Name": t.get("Name"), "TopicId": t.get("TopicId", bytes(16)),
                              "PartitionResponses": parts})
        if req["Acks"] == 0:
            return None
        return {"Responses": responses, "ThrottleTimeMs": 0}

    def _h_fetch(self, req, v):
        out, total = [], 0
        for t in req["Topics"]:
            parts = []
            for p in t["Partitions"]:
                pd = {"PartitionIndex": p["Partition"], "ErrorCode": 0, "HighWatermark": -1,
                      "LastStableOffset": -1, "LogStartOffset": -1, "AbortedTransactions": None,
                      "PreferredReadReplica": -1, "Records": None}
                if not self._is_golden(t, "Topic"):
                    pd["ErrorCode"] = 100 if v >= 13 else 3
                elif p["Partition"] != 0:
                    pd["ErrorCode"] = 3
                else:
                    with self.lock:
                        hw = self.next_offset
                        data = b"".join(raw for (first, last, raw) in self.log if last >= p["FetchOffset"])
                    pd.update(HighWatermark=hw, LastStableOffset=hw, LogStartOffset=0)
                    if p["FetchOffset"] > hw:
                        pd["ErrorCode"] = 1  # OFFSET_OUT_OF_RANGE
                    else:
                        pd["Records"] = data
                        total += len(data)
                parts.append(pd)
            out.append({"Topic": t.get("Topic"), "TopicId": t.get("TopicId", bytes(16)), "Partitions": parts})
        if total == 0 and req["MaxWaitMs"] > 0:
            time.sleep(min(req["MaxWaitMs"], 200) / 1000.0)  # long-poll, politely short
        return {"ThrottleTimeMs": 0, "ErrorCode": 0, "SessionId": 0, "Responses": out}

    def _h_list_offsets(self, req, v):
        topics = []
        for t in req["Topics"]:
            parts = []
            for p in t["Partitions"]:
                pr = {"PartitionIndex": p["PartitionIndex"], "ErrorCode": 0, "Timestamp": -1,
                      "Offset": -1, "LeaderEpoch": 0}
                if t["Name"] != TOPIC or p["PartitionIndex"] != 0:
                    pr["ErrorCode"] = 3
                elif p["Timestamp"] == -2:      # earliest
                    pr["Offset"] = 0
                elif p["Timestamp"] == -1:      # latest
                    pr["Offset"] = self.next_offset
                else:
                    pr["Offset"] = 0
                parts.append(pr)
            topics.append({"Name": t["Name"], "Partitions": parts})
        return {"ThrottleTimeMs": 0, "Topics": topics}


# ---------------------------------------------------------------------------
# Client runs (each executed in a child process)
# ---------------------------------------------------------------------------

def _b(s):
    return None if s is None else s.encode()


def child_librdkafka(run, bootstrap):
    import confluent_kafka
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    result = {"client_version": confluent_kafka.libversion()[0],
              "library": "confluent-kafka-python %s (librdkafka %s)" % (confluent_kafka.__version__,
                                                                       confluent_kafka.libversion()[0])}
    codec = run["codec"]
    records = expected_records(run)
    conf = {"bootstrap.servers": bootstrap, "client.id": PRODUCER_CLIENT_ID, "acks": "all",
            "request.timeout.ms": PRODUCE_TIMEOUT_MS, "compression.type": codec, "linger.ms": 100,
            "enable.idempotence": run["idempotent"], "message.timeout.ms": 30000}
    p = Producer(conf)
    reports = []
    for rec in records:
        p.produce(TOPIC, key=_b(rec["key"]), value=_b(rec["value"]), partition=0,
                  headers=[(h["key"], _b(h["value"])) for h in rec["headers"]] or None,
                  timestamp=rec["timestamp"],
                  on_delivery=lambda err, msg: reports.append((err, msg.offset() if msg else None)))
    left = p.flush(30)
    if left or len(reports) != len(records) or any(err for err, _ in reports):
        raise RuntimeError("delivery failed: left=%d reports=%r" % (left, reports))
    result["delivered_offsets"] = [o for _, o in reports]
    del p

    c = Consumer({"bootstrap.servers": bootstrap, "client.id": CONSUMER_CLIENT_ID,
                  # confluent-kafka refuses a Consumer without group.id; with
                  # assign() and no commits the group is only looked up.
                  "group.id": "golden-group", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest",
                  "fetch.wait.max.ms": FETCH_MAX_WAIT_MS, "fetch.min.bytes": FETCH_MIN_BYTES,
                  "fetch.max.bytes": FETCH_MAX_BYTES, "max.partition.fetch.bytes": PARTITION_MAX_BYTES})
    start = OFFSET_BEGINNING if run["start"] == "beginning" else 0
    c.assign([TopicPartition(TOPIC, 0, start)])
    got, deadline = [], time.time() + 30
    while len(got) < len(records) and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            raise RuntimeError("consume error: %s" % m.error())
        got.append({"key": m.key().decode(), "value": m.value().decode(),
                    "headers": [{"key": k, "value": v.decode()} for k, v in (m.headers() or [])],
                    "timestamp": m.timestamp()[1]})
    c.close()
    result["consumed"] = got
    return result


def child_kafka_python(run, bootstrap):
    import kafka
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    result = {"client_version": kafka.__version__, "library": "kafka-python %s" % kafka.__version__}
    codec = run["codec"]
    records = expected_records(run)
    p = KafkaProducer(bootstrap_servers=bootstrap, client_id=PRODUCER_CLIENT_ID, acks="all",
                      request_timeout_ms=PRODUCE_TIMEOUT_MS, linger_ms=100,
                      compression_type=None if codec == "none" else codec)
    futs = [p.send(TOPIC, key=_b(rec["key"]), value=_b(rec["value"]), partition=0,
                   headers=[(h["key"], _b(h["value"])) for h in rec["headers"]],
                   timestamp_ms=rec["timestamp"]) for rec in records]
    p.flush(30)
    result["delivered_offsets"] = [f.get(timeout=30).offset for f in futs]
    p.close(10)

    c = KafkaConsumer(bootstrap_servers=bootstrap, client_id=CONSUMER_CLIENT_ID, group_id=None,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      fetch_max_wait_ms=FETCH_MAX_WAIT_MS, fetch_min_bytes=FETCH_MIN_BYTES,
                      fetch_max_bytes=FETCH_MAX_BYTES, max_partition_fetch_bytes=PARTITION_MAX_BYTES)
    c.assign([TopicPartition(TOPIC, 0)])
    got, deadline = [], time.time() + 30
    while len(got) < len(records) and time.time() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            for m in recs:
                got.append({"key": m.key.decode(), "value": m.value.decode(),
                            "headers": [{"key": k, "value": v.decode()} for k, v in m.headers],
                            "timestamp": m.timestamp})
    c.close()
    result["consumed"] = got
    return result


def child_aiokafka(run, bootstrap):
    import asyncio
    import aiokafka
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    result = {"client_version": aiokafka.__version__, "library": "aiokafka %s" % aiokafka.__version__}
    codec = run["codec"]
    records = expected_records(run)

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=PRODUCER_CLIENT_ID, acks="all",
                             request_timeout_ms=PRODUCE_TIMEOUT_MS, linger_ms=100,
                             compression_type=None if codec == "none" else codec)
        await p.start()
        try:
            futs = [await p.send(TOPIC, key=_b(rec["key"]), value=_b(rec["value"]), partition=0,
                                 headers=[(h["key"], _b(h["value"])) for h in rec["headers"]],
                                 timestamp_ms=rec["timestamp"]) for rec in records]
            await p.flush()
            result["delivered_offsets"] = [(await asyncio.wait_for(f, 30)).offset for f in futs]
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id=CONSUMER_CLIENT_ID, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             fetch_max_wait_ms=FETCH_MAX_WAIT_MS, fetch_min_bytes=FETCH_MIN_BYTES,
                             fetch_max_bytes=FETCH_MAX_BYTES, max_partition_fetch_bytes=PARTITION_MAX_BYTES)
        await c.start()
        got = []
        try:
            c.assign([TopicPartition(TOPIC, 0)])
            deadline = time.time() + 30
            while len(got) < len(records) and time.time() < deadline:
                for recs in (await c.getmany(timeout_ms=500)).values():
                    for m in recs:
                        got.append({"key": m.key.decode(), "value": m.value.decode(),
                                    "headers": [{"key": k, "value": v.decode()} for k, v in m.headers],
                                    "timestamp": m.timestamp})
        finally:
            await c.stop()
        result["consumed"] = got

    asyncio.run(main())
    return result


def run_kcat(run, bootstrap, log):
    """kcat is a program, not a library: run it straight from the driver."""
    v = subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout
    kver = v.split("Version ")[1].split()[0]
    libver = v.split("librdkafka ")[1].split()[0]
    result = {"client_version": libver, "library": "kcat %s (librdkafka %s)" % (kver, libver)}
    rec = KCAT_RECORDS[0]
    common = ["-b", bootstrap, "-t", TOPIC, "-p", "0"]
    prod = subprocess.run(
        ["kcat", "-P"] + common + ["-K", ":", "-H", "%s=%s" % (rec["headers"][0]["key"], rec["headers"][0]["value"]),
                                   "-X", "client.id=" + PRODUCER_CLIENT_ID, "-X", "acks=all",
                                   "-X", "request.timeout.ms=%d" % PRODUCE_TIMEOUT_MS],
        input="%s:%s\n" % (rec["key"], rec["value"]), capture_output=True, text=True, timeout=60)
    log.append("kcat -P rc=%d\n%s%s" % (prod.returncode, prod.stdout, prod.stderr))
    if prod.returncode != 0:
        raise RuntimeError("kcat -P failed: %s" % prod.stderr)
    cons = subprocess.run(
        ["kcat", "-C"] + common + ["-o", "beginning", "-c", "1", "-e", "-f", "%k|%s|%h\\n",
                                   "-X", "client.id=" + CONSUMER_CLIENT_ID,
                                   "-X", "fetch.wait.max.ms=%d" % FETCH_MAX_WAIT_MS,
                                   "-X", "fetch.min.bytes=%d" % FETCH_MIN_BYTES,
                                   "-X", "fetch.max.bytes=%d" % FETCH_MAX_BYTES,
                                   "-X", "max.partition.fetch.bytes=%d" % PARTITION_MAX_BYTES],
        capture_output=True, text=True, timeout=60)
    log.append("kcat -C rc=%d\n%s%s" % (cons.returncode, cons.stdout, cons.stderr))
    if cons.returncode != 0:
        raise RuntimeError("kcat -C failed: %s" % cons.stderr)
    got = []
    for line in cons.stdout.splitlines():
        k, s, h = line.split("|")
        hk, hv = h.split("=", 1)
        got.append({"key": k, "value": s, "headers": [{"key": hk, "value": hv}], "timestamp": None})
    result["consumed"] = got
    result["delivered_offsets"] = [0]
    return result


def expected_records(run):
    if run["client"] == "kcat":
        return KCAT_RECORDS
    return RECORDS if run["codec"] == "none" else CODEC_RECORDS


CHILDREN = {"librdkafka": child_librdkafka, "kafka-python": child_kafka_python, "aiokafka": child_aiokafka}

# One run = one fresh broker, one fixture directory.  "idempotent" is whether
# the producer runs idempotent (kafka-python 3 defaults to it; librdkafka and
# aiokafka do not, so the plain librdkafka run turns it on to capture
# InitProducerId from librdkafka too).
RUNS = []
for _codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
    _sfx = "" if _codec == "none" else "-" + _codec
    RUNS.append({"dir": "librdkafka" + _sfx, "client": "librdkafka", "profile": "flexible", "codec": _codec,
                 "idempotent": _codec == "none", "start": "beginning" if _codec == "none" else "zero"})
RUNS.append({"dir": "librdkafka-legacy", "client": "librdkafka", "profile": "legacy", "codec": "none",
             "idempotent": True, "start": "beginning"})
for _codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
    _sfx = "" if _codec == "none" else "-" + _codec
    RUNS.append({"dir": "kafka-python" + _sfx, "client": "kafka-python", "profile": "flexible", "codec": _codec,
                 "idempotent": True, "start": "earliest"})
RUNS.append({"dir": "kafka-python-legacy", "client": "kafka-python", "profile": "legacy", "codec": "none",
             "idempotent": True, "start": "earliest"})
for _codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
    _sfx = "" if _codec == "none" else "-" + _codec
    RUNS.append({"dir": "aiokafka" + _sfx, "client": "aiokafka", "profile": "flexible", "codec": _codec,
                 "idempotent": False, "start": "earliest"})
RUNS.append({"dir": "kcat", "client": "kcat", "profile": "flexible", "codec": "none", "idempotent": False,
             "start": "beginning"})


def run_child_main(run_json, bootstrap):
    run = json.loads(run_json)
    try:
        res = CHILDREN[run["client"]](run, bootstrap)
        res["ok"] = True
    except Exception as e:
        res = {"ok": False, "error": "%s: %s" % (type(e).__name__, e), "trace": traceback.format_exc()}
    print("@@RESULT@@" + json.dumps(res))
    sys.stdout.flush()
    os._exit(0)  # do not wait for client background threads


# ---------------------------------------------------------------------------
# Driver: run, cross-check, write fixtures + manifest
# ---------------------------------------------------------------------------

MAX_PER_API_VERSION = 2




def describe(frame, run, state, checks):
    """Manifest entry fields for one frame (everything but path/client)."""
    header, body = parse_request(frame)
    key, ver = header["api_key"], header["api_version"]
    name, fname, req_schema, _ = APIS[key]
    e = {"api_key": key, "api_name": name, "api_version": ver, "header_version": header["header_version"],
         "flexible": req_schema.is_flexible(ver), "correlation_id": header["correlation_id"],
         "client_id": header["client_id"], "size": len(frame)}
    if header.get("tagged_fields"):
        e["header_tagged_fields"] = header["tagged_fields"]
    limit = PROFILES[run["profile"]][key][1]
    if key == 18 and ver > limit:
        # Not decodable by the broker's rules: answered with UNSUPPORTED_VERSION.
        e["answered_error_code"] = 35
        try:
            req = decode(req_schema, body, ver)
            e["client_software_name"] = req.get("ClientSoftwareName")
            e["client_software_version"] = req.get("ClientSoftwareVersion")
        except Exception as ex:  # a newer layout we do not know
            e["decode_note"] = str(ex)
        return e
    req = decode(req_schema, body, ver)
    cid = header["client_id"]

    def check(what, want, got):
        if want != got:
            checks.append("%s %s v%d corr %d: %s expected %r, sent %r" % (run["dir"], name, ver,
                                                                         header["correlation_id"], what, want, got))
        return want

    if key == 18:
        if ver >= 3:
            e["client_software_name"] = req["ClientSoftwareName"]
            e["client_software_version"] = req["ClientSoftwareVersion"]
    elif key == 3:
        e["topics"] = None if req["Topics"] is None else [t["Name"] for t in req["Topics"]]
        if ver >= 10 and req["Topics"]:
            e["topic_ids"] = [str(uuid.UUID(bytes=t["TopicId"])) for t in req["Topics"]]
        if ver >= 4:
            e["allow_auto_topic_creation"] = req["AllowAutoTopicCreation"]
    elif key == 22:
        e["transactional_id"] = req["TransactionalId"]
        e["transaction_timeout_ms"] = req["TransactionTimeoutMs"]
        if ver >= 3:
            e["producer_id"], e["producer_epoch"] = req["ProducerId"], req["ProducerEpoch"]
    elif key == 10:
        e["key"] = req.get("Key")
        e["key_type"] = req.get("KeyType", 0)
        if ver >= 4:
            e["coordinator_keys"] = req["CoordinatorKeys"]
    elif key == 2:
        [t] = req["Topics"]
        [p] = t["Partitions"]
        e.update(replica_id=req["ReplicaId"], isolation_level=req.get("IsolationLevel"), topic=t["Name"],
                 partition=p["PartitionIndex"], timestamp=p["Timestamp"],
                 current_leader_epoch=p.get("CurrentLeaderEpoch"))
        check("topic", TOPIC, t["Name"])
    elif key == 0:
        check("client_id", PRODUCER_CLIENT_ID, cid)
        [t] = req["TopicData"]
        [p] = t["PartitionData"]
        batches = split_batches(p["Records"])
        if len(batches) != 1:
            checks.append("%s: Produce with %d batches" % (run["dir"], len(batches)))
        b = batches[0]
        recs = expected_records(run)
        first = state["produced"]
        exp = recs[first:first + b["record_count"]]
        state["produced"] += b["record_count"]
        if run["idempotent"]:
            pid, pepoch, bseq = state["pid"], 0, first
        else:
            pid, pepoch, bseq = -1, -1, NON_IDEMPOTENT_BASE_SEQUENCE.get(run["client"], -1)
        e.update(transactional_id=req["TransactionalId"],
                 acks=check("acks", ACKS, req["Acks"]),
                 timeout_ms=check("timeout_ms", PRODUCE_TIMEOUT_MS, req["TimeoutMs"]))
        if ver >= 13:
            e["topic_id"] = str(uuid.UUID(bytes=check("topic_id", TOPIC_ID, t["TopicId"])))
        else:
            e["topic"] = check("topic", TOPIC, t["Name"])
        e.update(partition=check("partition", 0, p["Index"]),
                 records_size=len(p["Records"]),
                 codec=check("codec", run["codec"], b["codec"]),
                 attributes=b["attributes"],
                 producer_id=check("producer_id", pid, b["producer_id"]),
                 producer_epoch=check("producer_epoch", pepoch, b["producer_epoch"]),
                 base_sequence=check("base_sequence", bseq, b["base_sequence"]),
                 record_count=check("record_count", len(exp), b["record_count"]),
                 last_offset_delta=check("last_offset_delta", len(exp) - 1, b["last_offset_delta"]),
                 crc=b["crc"])
        if not b["crc_ok"]:
            checks.append("%s: batch CRC mismatch" % run["dir"])
        if exp and exp[0]["timestamp"] is not None:
            e["base_timestamp"] = check("base_timestamp", exp[0]["timestamp"], b["base_timestamp"])
            e["max_timestamp"] = check("max_timestamp", exp[-1]["timestamp"], b["max_timestamp"])
        e["records"] = exp
        decoded = decode_records(b)
        if decoded is None:
            e["records_checked_by_decoding"] = False
        else:
            e["records_checked_by_decoding"] = True
            for i, (want, got) in enumerate(zip(exp, decoded)):
                check("record %d offset_delta" % i, i, got["offset_delta"])
                got = dict(got)
                del got["offset_delta"]
                if want["timestamp"] is None:
                    got["timestamp"] = None
                check("record %d" % i, want, got)
    elif key == 1:
        check("client_id", CONSUMER_CLIENT_ID, cid)
        e.update(replica_id=req.get("ReplicaId", -1),
                 max_wait_ms=check("max_wait_ms", FETCH_MAX_WAIT_MS, req["MaxWaitMs"]),
                 min_bytes=check("min_bytes", FETCH_MIN_BYTES, req["MinBytes"]),
                 max_bytes=check("max_bytes", FETCH_MAX_BYTES, req["MaxBytes"]),
                 isolation_level=req["IsolationLevel"], session_id=req.get("SessionId"),
                 session_epoch=req.get("SessionEpoch"), rack_id=req.get("RackId"))
        if ver >= 12 and req.get("ClusterId") is not None:
            e["cluster_id"] = req["ClusterId"]
        tps = [(t, p) for t in req["Topics"] for p in t["Partitions"]]
        if len(tps) != 1:
            checks.append("%s: Fetch with %d partitions" % (run["dir"], len(tps)))
        if tps:
            t, p = tps[0]
            if ver >= 13:
                e["topic_id"] = str(uuid.UUID(bytes=check("topic_id", TOPIC_ID, t["TopicId"])))
            else:
                e["topic"] = check("topic", TOPIC, t["Topic"])
            e.update(partition=check("partition", 0, p["Partition"]), fetch_offset=p["FetchOffset"],
                     current_leader_epoch=p.get("CurrentLeaderEpoch"),
                     log_start_offset=p.get("LogStartOffset"),
                     partition_max_bytes=check("partition_max_bytes", PARTITION_MAX_BYTES, p["PartitionMaxBytes"]))
            if ver >= 12:
                e["last_fetched_epoch"] = p["LastFetchedEpoch"]
        e["forgotten_topics"] = len(req.get("ForgottenTopicsData") or [])
    return e


def capture_run(run, root, verbose):
    broker = FakeBroker(run["profile"], verbose)
    bootstrap = "127.0.0.1:%d" % broker.port
    log = []
    t0 = time.time()
    try:
        if run["client"] == "kcat":
            res = run_kcat(run, bootstrap, log)
            res["ok"] = True
        else:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(run), bootstrap],
                                  capture_output=True, text=True, timeout=120)
            log.append(proc.stderr)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")]
            res = json.loads(line[-1][10:]) if line else {"ok": False, "error": "child exited %d without result"
                                                          % proc.returncode}
    except Exception as e:
        res = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
    time.sleep(0.3)
    broker.close()
    res["seconds"] = round(time.time() - t0, 1)
    problems = []
    if not res.get("ok"):
        problems.append(res.get("error", "failed") + "\n" + res.get("trace", "") + "\n".join(log)[-3000:])
    problems += broker.errors
    want = expected_records(run)
    if res.get("ok") and res.get("consumed") != want:
        problems.append("consumed %r, expected %r" % (res.get("consumed"), want))
    if res.get("ok") and res.get("delivered_offsets") != list(range(len(want))):
        problems.append("delivered offsets %r" % (res.get("delivered_offsets"),))

    state = {"produced": 0, "pid": FIRST_PRODUCER_ID}
    described, checks = [], []
    for idx, frame, err in broker.frames:
        header, _ = parse_request(frame)
        try:
            described.append((frame, describe(frame, run, state, checks)))  # every frame is cross-checked
        except Exception as ex:
            problems.append("cannot describe %s v%d: %s\n%s" % (header["api_key"], header["api_version"], ex,
                                                                traceback.format_exc()))
    problems += checks
    if state["produced"] != len(want):
        problems.append("Produce requests carried %d records, expected %d" % (state["produced"], len(want)))
    seq = {"all_requests": [(parse_request(f)[0]["client_id"], APIS.get(parse_request(f)[0]["api_key"],
                            ("?",))[0], parse_request(f)[0]["api_version"]) for _, f, _ in broker.frames]}
    return res, described, problems, seq


def select(described, picked):
    """Drop exact duplicates (ignoring the correlation id) and keep at most
    MAX_PER_API_VERSION frames per api/version (per api/version/codec for
    Produce), counted over all runs of the same client, in arrival order."""
    kept = []
    for frame, entry in described:
        norm = frame[:8] + b"\0\0\0\0" + frame[12:]
        slot = (entry["api_key"], entry["api_version"], entry.get("codec"))
        if norm in picked["seen"] or picked["counts"].get(slot, 0) >= MAX_PER_API_VERSION:
            continue
        picked["seen"].add(norm)
        picked["counts"][slot] = picked["counts"].get(slot, 0) + 1
        kept.append((frame, entry))
    return kept


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "protocol", "tests", "fixtures", "golden"))
    ap.add_argument("--only", nargs="*", help="debugging: capture only these run directories (needs --out)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child_main(*args.child)
        return 0

    out = os.path.abspath(args.out)
    if args.only and out == os.path.abspath(ap.get_default("out")):
        ap.error("--only writes an incomplete fixture set: give it a scratch --out")
    runs = [r for r in RUNS if not args.only or r["dir"] in args.only]
    entries, summary, failed, files = [], [], [], []
    picked = {}  # client -> {"seen": set(), "counts": {}}
    for run in runs:
        print("== %s (%s, %s advertised, codec %s)" % (run["dir"], run["client"], run["profile"], run["codec"]),
              flush=True)
        res, described, problems, seq = capture_run(run, out, args.verbose)
        if problems:
            failed.append(run["dir"])
            for p in problems:
                print("   FAIL: " + p.rstrip())
            continue
        kept = select(described, picked.setdefault(run["client"], {"seen": set(), "counts": {}}))
        for n, (frame, entry) in enumerate(kept, 1):
            rel = "%s/%02d-%s-v%d.bin" % (run["dir"], n, APIS[entry["api_key"]][1], entry["api_version"])
            files.append((rel, frame))
            full = {"path": rel, "run": run["dir"], "client": run["client"], "client_version": res["client_version"],
                    "client_library": res["library"], "advertised": run["profile"]}
            full.update(entry)
            entries.append(full)
        sent = ", ".join("%s:%s v%d" % (c, a, v) for c, a, v in seq["all_requests"])
        print("   ok in %ss, %d of %d frames kept; %s" % (res["seconds"], len(kept), len(seq["all_requests"]), sent))
        summary.append(run["dir"])
    if failed:
        print("\n%d runs ok, %d FAILED (%s); nothing written" % (len(summary), len(failed), ", ".join(failed)))
        return 1

    os.makedirs(out, exist_ok=True)
    for run in RUNS:  # regenerate from scratch: stale frames must not survive
        d = os.path.join(out, run["dir"])
        if os.path.isdir(d):
            shutil.rmtree(d)
    for rel, frame in files:
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        with open(os.path.join(out, rel), "wb") as fh:
            fh.write(frame)
    versions = {}
    for e in entries:
        versions[e["client"]] = {"version": e["client_version"], "library": e["client_library"]}
    manifest = {
        "generated_by": "python3 scripts/capture-golden.py",
        "generated_at": datetime.date.today().isoformat(),
        "topic": TOPIC, "topic_id": str(uuid.UUID(bytes=TOPIC_ID)), "cluster_id": CLUSTER_ID,
        "first_producer_id": FIRST_PRODUCER_ID,
        "advertised": {p: {APIS[k][0]: list(r) for k, r in sorted(rng.items())} for p, rng in PROFILES.items()},
        "clients": versions,
        "files": entries,
    }
    with open(os.path.join(out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=False)
        fh.write("\n")
    print("\n%d runs ok; %d fixture files and manifest.json written to %s" % (len(summary), len(entries), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
