package etcd

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The engine's three single-key transactions, built as etcd's own request
// messages (see batcher.txn for why not with clientv3's Cmp and Op).

// acquireTxn puts key on lease if it does not exist, else reads it.
func acquireTxn(key, value string, lease clientv3.LeaseID) *pb.TxnRequest {
	k := []byte(key)
	return &pb.TxnRequest{
		Compare: []*pb.Compare{{Target: pb.Compare_CREATE, Result: pb.Compare_EQUAL, Key: k,
			TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 0}}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k, Value: []byte(value), Lease: int64(lease)}}}},
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: k}}}},
	}
}

// releaseTxn deletes key if its mod revision is still modRev.
func releaseTxn(key string, modRev int64) *pb.TxnRequest {
	k := []byte(key)
	return &pb.TxnRequest{
		Compare: []*pb.Compare{modRevIs(k, modRev)},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: k}}}},
	}
}

// refreshTxn puts key again, on lease, if its mod revision is still modRev.
func refreshTxn(key, value string, lease clientv3.LeaseID, modRev int64) *pb.TxnRequest {
	k := []byte(key)
	return &pb.TxnRequest{
		Compare: []*pb.Compare{modRevIs(k, modRev)},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k, Value: []byte(value), Lease: int64(lease)}}}},
	}
}

func modRevIs(key []byte, rev int64) *pb.Compare {
	return &pb.Compare{Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, Key: key,
		TargetUnion: &pb.Compare_ModRevision{ModRevision: rev}}
}
