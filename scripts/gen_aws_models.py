#!/usr/bin/env python3
"""Generate crates/aws/data/models.json.gz from botocore's bundled AWS API models.

The output is one compact table that shoal embeds to drive its generic
`arn:aws:states:::aws-sdk:<service>:<action>` integration: per service the
wire protocol, endpoint/signing metadata, the operations and the shapes (with
documentation and other noise stripped; the validation constraints min, max
and enum are kept only on shapes an operation's output reaches, where TestState
checks a mocked result against them).

Setup and use (botocore is pinned; the script refuses any other version so that
the output is reproducible byte for byte):

    python3 -m venv /tmp/genvenv
    /tmp/genvenv/bin/pip install botocore==1.44.8
    /tmp/genvenv/bin/python scripts/gen_aws_models.py [OUT.json.gz]

OUT defaults to crates/aws/data/models.json.gz (relative to the repository root).

Output JSON (keys sorted, gzip mtime 0):

    {"botocore": "<version>", "services": {KEY: SERVICE, ...}}

KEY is the name Step Functions uses in arn:aws:states:::aws-sdk:KEY:action
(metadata.serviceId lowercased, non-alphanumerics removed). SERVICE has:
id, prefix (AWS SDK for Java v2 client name = Step Functions error prefix),
protocol, jsonVersion, targetPrefix, apiVersion, xmlNamespace, endpointPrefix,
signingName, queryCompatible, global {host, region}, ops, shapes.
Absent values are omitted.
"""

import gzip
import io
import json
import os
import re
import sys

BOTOCORE_VERSION = "1.44.8"

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "crates", "aws", "data", "models.json.gz")

# Protocols shoal speaks. Some services list several in metadata.protocols
# (e.g. ["smithy-rpc-v2-cbor", "json"]); we take the first one we support.
SUPPORTED_PROTOCOLS = ("json", "rest-json", "rest-xml", "query", "ec2")

# Keys kept on shapes and on member references (recursively).
KEEP_SHAPE_KEYS = frozenset(
    """type members member key value required payload locationName location
    flattened xmlNamespace xmlAttribute timestampFormat jsonvalue queryName
    streaming idempotencyToken hostLabel error exception document union
    eventstream event eventpayload shape""".split()
)
# Constraints kept on the shapes an operation's output reaches, for TestState's
# mock checks (fieldValidationMode); input shapes never need them.
KEEP_OUTPUT_CONSTRAINTS = ("min", "max", "enum")
KEEP_ERROR_KEYS = ("code", "httpStatusCode")


def die(msg):
    print("gen_aws_models: " + msg, file=sys.stderr)
    sys.exit(2)


try:
    import botocore
    from botocore.loaders import Loader
except ImportError:
    die(
        "botocore is not installed for %s.\n"
        "  python3 -m venv /tmp/genvenv && /tmp/genvenv/bin/pip install botocore==%s\n"
        "  /tmp/genvenv/bin/python scripts/gen_aws_models.py" % (sys.executable, BOTOCORE_VERSION)
    )

if botocore.__version__ != BOTOCORE_VERSION:
    die(
        "installed botocore is %s but this generator is pinned to %s.\n"
        "Install the pinned version (pip install botocore==%s), or bump BOTOCORE_VERSION\n"
        "in this script deliberately and regenerate."
        % (botocore.__version__, BOTOCORE_VERSION, BOTOCORE_VERSION)
    )


# --- naming -----------------------------------------------------------------


def service_key(service_id):
    """Step Functions aws-sdk service name: serviceId lowercased, non-alnum removed."""
    return re.sub(r"[^a-z0-9]", "", service_id.lower())


def split_words(s):
    """Word splitting as the AWS SDK for Java v2 code generator does it
    (CodegenNamingUtils.splitOnWordBoundaries): separators become spaces,
    camelCase boundaries split, a run of capitals is one word ("DynamoDB" ->
    Dynamo DB), digits stay attached to the word before them ("EC2", "S3")."""
    s = re.sub(r"[^A-Za-z0-9]+", " ", s)
    s = re.sub(r"([^a-z]{2,})v([0-9]+)", r"\1 v\2 ", s)  # TESTv4 -> TEST v4
    s = re.sub(r"([^A-Z]{2,})V([0-9]+)", r"\1 V\2 ", s)  # TestV4 -> Test V4
    s = re.sub(r"(?<=[a-z])(?=[A-Z][a-zA-Z0-9])", " ", s)  # AcmSuccess -> Acm Success
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", s)  # ACMSuccess -> ACM Success
    s = re.sub(r"([0-9])([a-zA-Z])", r"\1 \2", s)  # s3ec2 -> s3 ec2
    return s.split()


def error_prefix(service_id):
    """Java v2 client name (DefaultNamingStrategy.getServiceName), which AWS
    Step Functions uses as the prefix of aws-sdk task error names."""
    name = "".join(w[:1].upper() + w[1:].lower() for w in split_words(service_id))
    for lead in ("Amazon", "Aws"):
        if name.startswith(lead):
            name = name[len(lead):]
    if name.endswith("Service"):
        name = name[: -len("Service")]
    return name


# --- filtering --------------------------------------------------------------


def filter_ref(d):
    """Keep only the wire-relevant keys of a shape or member reference."""
    out = {}
    for k, v in d.items():
        if k not in KEEP_SHAPE_KEYS:
            continue
        if k == "members":
            v = {name: filter_ref(ref) for name, ref in v.items()}
        elif k in ("member", "key", "value"):
            v = filter_ref(v)
        elif k == "error":
            v = {ek: v[ek] for ek in KEEP_ERROR_KEYS if ek in v}
            if not v:
                continue
        out[k] = v
    return out


def build_op(op):
    http = op.get("http", {})
    out = {}
    if "method" in http:
        out["method"] = http["method"]
    if "requestUri" in http:
        out["uri"] = http["requestUri"]
    if "responseCode" in http:
        out["status"] = http["responseCode"]
    inp = op.get("input")
    if inp:
        out["input"] = inp["shape"]
        # rest-xml (Route 53, S3, CloudFront) names and namespaces the request
        # body root element on the operation's input reference.
        if "locationName" in inp:
            out["inputLocationName"] = inp["locationName"]
        if "xmlNamespace" in inp:
            out["inputXmlNamespace"] = inp["xmlNamespace"]
    outp = op.get("output")
    if outp:
        out["output"] = outp["shape"]
        if "resultWrapper" in outp:
            out["wrapper"] = outp["resultWrapper"]
    errors = [e["shape"] for e in op.get("errors", [])]
    if errors:
        out["errors"] = errors
    host_prefix = op.get("endpoint", {}).get("hostPrefix")
    if host_prefix:
        out["hostPrefix"] = host_prefix
    return out


def pick_protocol(meta):
    candidates = list(meta.get("protocols") or []) or [meta["protocol"]]
    for p in candidates:
        if p in SUPPORTED_PROTOCOLS:
            return p
    return meta["protocol"]


def global_endpoints(endpoints):
    """endpointPrefix -> {host, region} for non-regionalized services of the
    `aws` partition (botocore only uses partitionEndpoint for a real region
    when isRegionalized is false; s3 and sts have one but are regional)."""
    aws = next(p for p in endpoints["partitions"] if p["partition"] == "aws")
    out = {}
    for prefix, svc in aws["services"].items():
        pe = svc.get("partitionEndpoint")
        if not pe or svc.get("isRegionalized", True):
            continue
        ep = svc.get("endpoints", {}).get(pe, {})
        host = ep.get("hostname")
        if not host:
            continue
        host = (
            host.replace("{service}", prefix)
            .replace("{dnsSuffix}", aws["dnsSuffix"])
        )
        g = {"host": host}
        region = ep.get("credentialScope", {}).get("region")
        if region:
            g["region"] = region
        out[prefix] = g
    return out


def build_service(model, globals_by_prefix):
    meta = model["metadata"]
    svc = {
        "id": meta["serviceId"],
        "prefix": error_prefix(meta["serviceId"]),
        "protocol": pick_protocol(meta),
        "apiVersion": meta["apiVersion"],
        "endpointPrefix": meta["endpointPrefix"],
        "signingName": meta.get("signingName") or meta["endpointPrefix"],
    }
    for k in ("jsonVersion", "targetPrefix", "xmlNamespace"):
        if k in meta:
            svc[k] = meta[k]
    if "awsQueryCompatible" in meta:
        svc["queryCompatible"] = True
    g = globals_by_prefix.get(meta["endpointPrefix"])
    if g:
        svc["global"] = g
    svc["ops"] = {name: build_op(op) for name, op in model["operations"].items()}
    shapes = model["shapes"]
    svc["shapes"] = {name: filter_ref(s) for name, s in shapes.items()}
    for name in sorted(output_shapes(model)):
        for k in KEEP_OUTPUT_CONSTRAINTS:
            if k in shapes[name]:
                svc["shapes"][name][k] = shapes[name][k]
    return svc


def output_shapes(model):
    """Every shape an operation's output reaches."""
    shapes = model["shapes"]
    seen = set()
    todo = [op["output"]["shape"] for op in model["operations"].values() if op.get("output")]
    while todo:
        name = todo.pop()
        if name in seen or name not in shapes:
            continue
        seen.add(name)
        s = shapes[name]
        todo.extend(m["shape"] for m in s.get("members", {}).values())
        todo.extend(s[k]["shape"] for k in ("member", "key", "value") if k in s)
    return seen


# --- main -------------------------------------------------------------------


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print("usage: gen_aws_models.py [OUT.json.gz]   (default %s)" % DEFAULT_OUT)
        return 0 if len(argv) == 2 else 2
    out_path = argv[1] if len(argv) == 2 else DEFAULT_OUT

    # Only botocore's bundled data: no ~/.aws/models, no AWS_DATA_PATH, no extras.
    loader = Loader(
        extra_search_paths=[Loader.BUILTIN_DATA_PATH],
        include_default_search_paths=False,
        include_default_extras=False,
    )
    globals_by_prefix = global_endpoints(loader.load_data("endpoints"))

    by_key = {}  # key -> [(botocore_name, model)]
    for name in sorted(loader.list_available_services("service-2")):
        model = loader.load_service_model(name, "service-2")  # newest apiVersion
        by_key.setdefault(service_key(model["metadata"]["serviceId"]), []).append((name, model))

    services = {}
    collisions = []
    unsupported = []
    for key in sorted(by_key):
        cands = by_key[key]
        chosen = next((c for c in cands if c[0] == key), cands[0])
        if len(cands) > 1:
            collisions.append((key, [c[0] for c in cands], chosen[0]))
        services[key] = build_service(chosen[1], globals_by_prefix)
        if services[key]["protocol"] not in SUPPORTED_PROTOCOLS:
            unsupported.append((key, services[key]["protocol"]))

    doc = {"botocore": botocore.__version__, "services": services}
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    gzbytes = buf.getvalue()

    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(gzbytes)
    os.replace(tmp, out_path)

    print("botocore %s: %d services -> %s" % (botocore.__version__, len(services), out_path))
    print("size: raw %d bytes (%.1f MiB), gzip %d bytes (%.1f MiB)"
          % (len(raw), len(raw) / 2**20, len(gzbytes), len(gzbytes) / 2**20))
    for key, names, chosen in collisions:
        print("collision: key %r <- botocore %s; kept %s" % (key, ", ".join(names), chosen))
    if not collisions:
        print("collisions: none")
    for key, proto in unsupported:
        print("note: %s has only protocol %s" % (key, proto))

    self_check(services)
    return 0


def self_check(services):
    prefixes = {
        "DynamoDB": "DynamoDb", "S3": "S3", "SFN": "Sfn", "Secrets Manager": "SecretsManager",
        "CloudWatch Logs": "CloudWatchLogs", "EC2": "Ec2", "EventBridge": "EventBridge",
        "SQS": "Sqs", "SNS": "Sns", "Lambda": "Lambda", "API Gateway": "ApiGateway",
        "IAM": "Iam", "KMS": "Kms",
    }
    for sid, want in prefixes.items():
        got = error_prefix(sid)
        assert got == want, "error_prefix(%r) = %r, want %r" % (sid, got, want)
        key = service_key(sid)
        assert key in services, "service key %r missing" % key
        assert services[key]["id"] == sid, (key, services[key]["id"], sid)
        assert services[key]["prefix"] == want, (key, services[key]["prefix"], want)
    keys = {
        "DynamoDB": "dynamodb", "S3": "s3", "SFN": "sfn", "Secrets Manager": "secretsmanager",
        "SQS": "sqs", "SNS": "sns", "EventBridge": "eventbridge",
        "CloudWatch Logs": "cloudwatchlogs", "Lambda": "lambda", "EC2": "ec2",
    }
    for sid, want in keys.items():
        assert service_key(sid) == want, (sid, service_key(sid), want)
    assert services["iam"]["global"] == {"host": "iam.amazonaws.com", "region": "us-east-1"}
    assert "global" not in services["s3"]

    print("self-check: prefix and key rules OK")
    for key, op in [
        ("dynamodb", "PutItem"), ("s3", "GetObject"), ("sqs", "SendMessage"),
        ("sns", "Publish"), ("eventbridge", "PutEvents"), ("sfn", "StartExecution"),
        ("secretsmanager", "ListSecrets"),
    ]:
        svc = services[key]
        print("  %s %s [%s, prefix %s]: %s" % (
            key, op, svc["protocol"], svc["prefix"],
            json.dumps(svc["ops"][op], sort_keys=True)))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
