"""A CRI client on gRPC C-core (the `grpcio` package): an HTTP/2 and gRPC implementation
apart from the Rust ones crigate and its other tests are built on.

Usage: grpc_core_client.py SOCKET < calls.json > outcomes.json

calls.json: {"authority": "localhost" or null,
             "calls": [{"method": "/runtime.v1.RuntimeService/Version",
                        "request": "<hex of the encoded request message>",
                        "timeout": 5.0 or null, "metadata": [["key", "value"], ...],
                        "copies": 1}, ...]}

The authority, when given, is sent as it is in every call's `:authority` (C-core's own
is the socket's path, percent-encoded). Every call goes on one channel, so later calls meet the header table the earlier ones
filled; a call's copies are in flight at the same time, multiplexed on that channel.
Messages pass as bytes (no serializer), so the client knows no CRI type and neither adds
nor drops a field. For each call it prints the outcome of each copy: the status code's
name, its details, the response's hex, and the initial and trailing metadata.
"""

import json
import sys

import grpc

# What kubelet allows a CRI response to carry.
MAX_MESSAGE = 16 * 1024 * 1024


def outcome_of(future):
    try:
        response = future.result()
        return {
            "code": "OK",
            "details": None,
            "response": response.hex(),
            "initial": sorted(map(list, future.initial_metadata() or ())),
            "trailing": sorted(map(list, future.trailing_metadata() or ())),
        }
    except grpc.RpcError as error:
        return {
            "code": error.code().name,
            "details": error.details(),
            "response": None,
            "initial": sorted(map(list, error.initial_metadata() or ())),
            "trailing": sorted(map(list, error.trailing_metadata() or ())),
        }


def main():
    socket = sys.argv[1]
    given = json.load(sys.stdin)
    calls = given["calls"]
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.enable_http_proxy", 0),
    ]
    if given.get("authority") is not None:
        options.append(("grpc.default_authority", given["authority"]))
    outcomes = []
    with grpc.insecure_channel("unix://" + socket, options=options) as channel:
        for call in calls:
            method = channel.unary_unary(call["method"])
            request = bytes.fromhex(call["request"])
            metadata = [tuple(pair) for pair in call.get("metadata") or ()]
            futures = [
                method.future(request, timeout=call.get("timeout"), metadata=metadata or None)
                for _ in range(call.get("copies", 1))
            ]
            outcomes.append([outcome_of(future) for future in futures])
    json.dump(outcomes, sys.stdout)


if __name__ == "__main__":
    main()
