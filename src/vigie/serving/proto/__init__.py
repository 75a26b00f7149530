"""OIP v2 gRPC contract: ``grpc_predict_v2.proto`` and the code ``make proto`` generates from it.

The ``*_pb2*`` modules are generated; never edit them by hand.
"""
