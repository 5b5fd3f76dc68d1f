package etcd

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The engine's three single-key transactions, built as etcd's own request
// messages (see batcher.txn for why not with clientv3's Cmp and Op), each
// in one allocation: they are built for every step.

// stepMsgs holds the messages of one step's transaction.
type stepMsgs struct {
	req    pb.TxnRequest
	cmp    pb.Compare
	create pb.Compare_CreateRevision
	mod    pb.Compare_ModRevision
	put    pb.PutRequest
	putOp  pb.RequestOp_RequestPut
	get    pb.RangeRequest
	getOp  pb.RequestOp_RequestRange
	del    pb.DeleteRangeRequest
	delOp  pb.RequestOp_RequestDeleteRange
	ops    [2]pb.RequestOp
	cmps   [1]*pb.Compare
	then   [1]*pb.RequestOp
	els    [1]*pb.RequestOp
}

// txn is If(cmp).Then(ops[0]).Else(ops[1] if withElse).
func (m *stepMsgs) txn(withElse bool) *pb.TxnRequest {
	m.cmps[0] = &m.cmp
	m.req.Compare = m.cmps[:]
	m.then[0] = &m.ops[0]
	m.req.Success = m.then[:]
	if withElse {
		m.els[0] = &m.ops[1]
		m.req.Failure = m.els[:]
	}
	return &m.req
}

func (m *stepMsgs) modRevIs(key []byte, rev int64) {
	m.cmp.Target, m.cmp.Result, m.cmp.Key = pb.Compare_MOD, pb.Compare_EQUAL, key
	m.mod.ModRevision = rev
	m.cmp.TargetUnion = &m.mod
}

// putOn makes ops[0] a put of key on lease.
func (m *stepMsgs) putOn(key, value []byte, lease clientv3.LeaseID) {
	m.put.Key, m.put.Value, m.put.Lease = key, value, int64(lease)
	m.putOp.RequestPut = &m.put
	m.ops[0].Request = &m.putOp
}

// acquireTxn puts key on lease if it does not exist, else reads it.
func acquireTxn(key string, value []byte, lease clientv3.LeaseID) *pb.TxnRequest {
	k := []byte(key)
	m := new(stepMsgs)
	m.cmp.Target, m.cmp.Result, m.cmp.Key = pb.Compare_CREATE, pb.Compare_EQUAL, k
	m.cmp.TargetUnion = &m.create // create revision 0: no such key
	m.putOn(k, value, lease)
	m.get.Key = k
	m.getOp.RequestRange = &m.get
	m.ops[1].Request = &m.getOp
	return m.txn(true)
}

// releaseTxn deletes key if its mod revision is still modRev.
func releaseTxn(key string, modRev int64) *pb.TxnRequest {
	k := []byte(key)
	m := new(stepMsgs)
	m.modRevIs(k, modRev)
	m.del.Key = k
	m.delOp.RequestDeleteRange = &m.del
	m.ops[0].Request = &m.delOp
	return m.txn(false)
}

// refreshTxn puts key again, on lease, if its mod revision is still modRev.
func refreshTxn(key string, value []byte, lease clientv3.LeaseID, modRev int64) *pb.TxnRequest {
	k := []byte(key)
	m := new(stepMsgs)
	m.modRevIs(k, modRev)
	m.putOn(k, value, lease)
	return m.txn(false)
}
