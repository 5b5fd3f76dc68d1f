package etcd

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The engine's transactions on one lock — its lock key and its delay key —
// built as etcd's own request messages (see batcher.txn for why not with
// clientv3's Cmp and Op), each in one allocation: they are built for every
// step.

// stepMsgs holds the messages of one step's transaction: at most two
// compares, three operations in the success branch and two in the other.
type stepMsgs struct {
	req    pb.TxnRequest
	cmp    [2]pb.Compare
	create [2]pb.Compare_CreateRevision
	mod    [2]pb.Compare_ModRevision
	put    [2]pb.PutRequest
	putOp  [2]pb.RequestOp_RequestPut
	get    [2]pb.RangeRequest
	getOp  [2]pb.RequestOp_RequestRange
	del    [2]pb.DeleteRangeRequest
	delOp  [2]pb.RequestOp_RequestDeleteRange
	ops    [4]pb.RequestOp
	cmps   [2]*pb.Compare
	then   [3]*pb.RequestOp
	els    [2]*pb.RequestOp

	nCmp, nPut, nGet, nDel, nOps, nThen, nElse int
}

// delayPut is a delay record to put, on its lease.
type delayPut struct {
	value []byte
	lease clientv3.LeaseID
}

// done assembles the transaction.
func (m *stepMsgs) done() *pb.TxnRequest {
	for i := range m.nCmp {
		m.cmps[i] = &m.cmp[i]
	}
	m.req.Compare = m.cmps[:m.nCmp]
	m.req.Success = m.then[:m.nThen]
	if m.nElse > 0 {
		m.req.Failure = m.els[:m.nElse]
	}
	return &m.req
}

// createRevIs0 compares: key does not exist.
func (m *stepMsgs) createRevIs0(key []byte) {
	c := &m.cmp[m.nCmp]
	c.Target, c.Result, c.Key = pb.Compare_CREATE, pb.Compare_EQUAL, key
	c.TargetUnion = &m.create[m.nCmp]
	m.nCmp++
}

// modRevIs compares: key's mod revision is rev (0: key does not exist —
// etcd compares a missing key as all zeros).
func (m *stepMsgs) modRevIs(key []byte, rev int64) {
	c := &m.cmp[m.nCmp]
	c.Target, c.Result, c.Key = pb.Compare_MOD, pb.Compare_EQUAL, key
	m.mod[m.nCmp].ModRevision = rev
	c.TargetUnion = &m.mod[m.nCmp]
	m.nCmp++
}

func (m *stepMsgs) op() *pb.RequestOp {
	op := &m.ops[m.nOps]
	m.nOps++
	return op
}

func (m *stepMsgs) addThen(op *pb.RequestOp) { m.then[m.nThen] = op; m.nThen++ }
func (m *stepMsgs) addElse(op *pb.RequestOp) { m.els[m.nElse] = op; m.nElse++ }

func (m *stepMsgs) putOn(key, value []byte, lease clientv3.LeaseID) *pb.RequestOp {
	p := &m.put[m.nPut]
	p.Key, p.Value, p.Lease = key, value, int64(lease)
	m.putOp[m.nPut].RequestPut = p
	op := m.op()
	op.Request = &m.putOp[m.nPut]
	m.nPut++
	return op
}

func (m *stepMsgs) getOf(key []byte) *pb.RequestOp {
	g := &m.get[m.nGet]
	g.Key = key
	m.getOp[m.nGet].RequestRange = g
	op := m.op()
	op.Request = &m.getOp[m.nGet]
	m.nGet++
	return op
}

func (m *stepMsgs) delOf(key []byte) *pb.RequestOp {
	d := &m.del[m.nDel]
	d.Key = key
	m.delOp[m.nDel].RequestDeleteRange = d
	op := m.op()
	op.Request = &m.delOp[m.nDel]
	m.nDel++
	return op
}

// acquireTxn puts key on lease if it does not exist and the delay key's
// mod revision is still delayRev (0: no delay record), else reads both
// keys. With delay, the delay record is put too; without, a delay record
// found (delayRev > 0) is deleted — the new holder replaces the lost one.
func acquireTxn(key, delayKey string, value []byte, lease clientv3.LeaseID, delay *delayPut, delayRev int64) *pb.TxnRequest {
	k, dk := []byte(key), []byte(delayKey)
	m := new(stepMsgs)
	m.createRevIs0(k)
	m.modRevIs(dk, delayRev)
	m.addThen(m.putOn(k, value, lease))
	switch {
	case delay != nil:
		m.addThen(m.putOn(dk, delay.value, delay.lease))
	case delayRev != 0:
		m.addThen(m.delOf(dk))
	}
	m.addElse(m.getOf(k))
	m.addElse(m.getOf(dk))
	return m.done()
}

// releaseTxn deletes key — and its delay record, when delayKey is not ""
// — and puts the release marker on markerLease, if key's mod revision is
// still modRev. The marker comes after the delete, so that a watch sees
// the lock go before the marker that says why (either order works: they
// share a revision).
func releaseTxn(key, delayKey, markerKey string, markerValue []byte, markerLease clientv3.LeaseID, modRev int64) *pb.TxnRequest {
	k := []byte(key)
	m := new(stepMsgs)
	m.modRevIs(k, modRev)
	m.addThen(m.delOf(k))
	if delayKey != "" {
		m.addThen(m.delOf([]byte(delayKey)))
	}
	m.addThen(m.putOn([]byte(markerKey), markerValue, markerLease))
	return m.done()
}

// revokeTxn deletes key, puts delay (when not nil) under delayKey and the
// revoke's marker on markerLease, if key's mod revision is still modRev.
func revokeTxn(key, delayKey string, delay *delayPut, markerKey string, markerValue []byte, markerLease clientv3.LeaseID, modRev int64) *pb.TxnRequest {
	k := []byte(key)
	m := new(stepMsgs)
	m.modRevIs(k, modRev)
	m.addThen(m.delOf(k))
	if delay != nil {
		m.addThen(m.putOn([]byte(delayKey), delay.value, delay.lease))
	}
	m.addThen(m.putOn([]byte(markerKey), markerValue, markerLease))
	return m.done()
}

// refreshTxn puts key again, on lease — and with delay, the delay record
// under delayKey — if key's mod revision is still modRev.
func refreshTxn(key, delayKey string, value []byte, lease clientv3.LeaseID, delay *delayPut, modRev int64) *pb.TxnRequest {
	k := []byte(key)
	m := new(stepMsgs)
	m.modRevIs(k, modRev)
	m.addThen(m.putOn(k, value, lease))
	if delay != nil {
		m.addThen(m.putOn([]byte(delayKey), delay.value, delay.lease))
	}
	return m.done()
}

// readTxn reads key and delayKey at one revision.
func readTxn(key, delayKey string) *pb.TxnRequest {
	m := new(stepMsgs)
	m.addThen(m.getOf([]byte(key)))
	m.addThen(m.getOf([]byte(delayKey)))
	return m.done()
}
