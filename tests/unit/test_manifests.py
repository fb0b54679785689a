"""Every manifest under keda/ is valid and says what the fleet needs; no cluster needed.

Rendering: the overlays are rendered by a small kustomize below that knows exactly the
features keda/ uses (`resources`, `images`, JSON 6902 `patches`) and refuses any other
key, so it runs everywhere, with no binary and no network. Where `kustomize` or `kubectl`
is installed, the real rendering must equal it, which keeps the small one honest.

Validation: Kubernetes kinds with `kubernetes-validate` (strict: unknown fields fail);
KEDA kinds, which it does not know, with jsonschema against KEDA's CRD schemas (closed
to unknown fields, as the API server's field validation is) and each kafka trigger's
metadata against the kafka scaler's parameter list in KEDA's scaler schema. The KEDA
schemas live beside the repository, in ../shared/keda-schemas; where that copy is
missing those tests skip and say so, except under CI=true, where they fail.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from inferfleet.clients.topics import LANES, job_topic
from inferfleet.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
KEDA = ROOT / "keda"
OVERLAYS = ("cpu", "gpu")
KEDA_SCHEMAS = ROOT.parent / "shared" / "keda-schemas"
# A release kubernetes-validate bundles, and one current KEDA releases support.
KUBERNETES_VERSION = "1.33.0"
WORKER = "app.kubernetes.io/component"

Obj = dict[str, Any]


# --- a small kustomize ---------------------------------------------------------------

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "images", "patches"}
TARGET_KEYS = {"group", "version", "kind", "name", "labelSelector"}


def render(directory: Path) -> list[Obj]:
    """The objects `kustomize build directory` would print, for the subset keda/ uses."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - KUSTOMIZATION_KEYS
    assert not unsupported, (
        f"{directory / 'kustomization.yaml'} uses {sorted(unsupported)}, which this test's "
        "kustomize does not implement: teach render() or use resources/images/patches"
    )
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for patch in kustomization.get("patches", []):
        apply_patch(objects, patch, directory)
    for image in kustomization.get("images", []):
        set_image(objects, image)
    return objects


def matches(obj: Obj, target: dict[str, str]) -> bool:
    unsupported = set(target) - TARGET_KEYS
    assert not unsupported, f"patch target keys {sorted(unsupported)} are not implemented"
    group, _, version = obj["apiVersion"].rpartition("/")
    if target.get("group", group) != group or target.get("version", version) != version:
        return False
    if target.get("kind", obj["kind"]) != obj["kind"]:
        return False
    if target.get("name", obj["metadata"]["name"]) != obj["metadata"]["name"]:
        return False
    labels = obj["metadata"].get("labels", {})
    for term in filter(None, target.get("labelSelector", "").split(",")):
        key, op, value = term.partition("=")
        assert op == "=", f"only key=value label selectors are implemented, not {term!r}"
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def apply_patch(objects: list[Obj], patch: dict[str, Any], directory: Path) -> None:
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
    ops = yaml.safe_load(text)
    assert isinstance(ops, list), "only JSON 6902 patches (a list of operations) are implemented"
    targets = [o for o in objects if matches(o, patch["target"])]
    assert targets, f"patch target {patch['target']} matches no object"
    for obj in targets:
        for op in ops:
            json_patch(obj, op)


def json_patch(doc: Obj, op: dict[str, Any]) -> None:
    """One RFC 6902 operation (add, replace, remove) on `doc`, in place."""
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if op["op"] == "add":
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), copy.deepcopy(op["value"]))
        else:
            node[last] = copy.deepcopy(op["value"])
    elif op["op"] == "replace":
        key: Any = int(last) if isinstance(node, list) else last
        existing = range(len(node)) if isinstance(node, list) else node
        assert key in existing, f"replace of missing {op['path']}"
        node[key] = copy.deepcopy(op["value"])
    elif op["op"] == "remove":
        del node[int(last) if isinstance(node, list) else last]
    else:
        raise AssertionError(f"JSON patch op {op['op']!r} is not implemented")


def set_image(objects: list[Obj], image: dict[str, str]) -> None:
    for container in all_containers(objects):
        name = re.split(r"[@:]", container["image"], maxsplit=1)[0]
        if name != image["name"]:
            continue
        new = image.get("newName", name)
        if "digest" in image:
            new += "@" + image["digest"]
        elif "newTag" in image:
            new += ":" + image["newTag"]
        container["image"] = new


def all_containers(objects: list[Obj]) -> Iterator[Obj]:
    def walk(node: Any) -> Iterator[Obj]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    yield from value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    for obj in objects:
        yield from walk(obj)


@cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    return tuple(render(KEDA / "overlays" / overlay))


def by_kind(overlay: str, kind: str) -> list[Obj]:
    return [copy.deepcopy(o) for o in rendered(overlay) if o["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> Obj:
    found = [o for o in by_kind(overlay, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def key(obj: Obj) -> tuple[str, str, str]:
    return (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


def kustomize_command(directory: Path) -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build", str(directory)]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", str(directory)]
    return None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_small_kustomize_renders_like_the_real_one(overlay: str) -> None:
    command = kustomize_command(KEDA / "overlays" / overlay)
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed; the small kustomize alone renders")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr}"
    real = {key(o): o for o in yaml.safe_load_all(done.stdout) if o}
    ours = {key(o): o for o in rendered(overlay)}
    assert sorted(ours) == sorted(real)
    for k, obj in ours.items():
        assert obj == real[k], f"{k} differs from {command[0]}'s rendering"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_object_is_defined_twice(overlay: str) -> None:
    keys = [key(o) for o in rendered(overlay)]
    assert len(keys) == len(set(keys))


# --- Kubernetes' schemas -------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_objects_validate_strictly(overlay: str) -> None:
    problems = []
    for obj in rendered(overlay):
        if obj["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: {e.message}")
    assert not problems, "\n".join(problems)


# --- KEDA's schemas ------------------------------------------------------------------


def keda_schemas() -> Path:
    """The folder of KEDA's schemas; skips (or fails under CI=true) where it is missing."""
    if (KEDA_SCHEMAS / "scalers-schema.json").exists():
        return KEDA_SCHEMAS
    message = (
        f"KEDA's schemas are not at {KEDA_SCHEMAS} (a copy of shared/keda-schemas/ beside "
        "the repository); KEDA objects were not validated"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def closed(schema: Any) -> Any:
    """`schema` with unknown fields refused wherever it lists the known ones."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items() if k != "properties"}
    if "properties" in schema:
        out["properties"] = {k: closed(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    return out


@cache
def crd_schema(kind: str, version: str) -> Obj:
    files = {
        "ScaledObject": "keda.sh_scaledobjects.yaml",
        "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
    }
    assert kind in files, f"no CRD schema for KEDA kind {kind}"
    crd = yaml.safe_load((keda_schemas() / files[kind]).read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return closed(v["schema"]["openAPIV3Schema"])  # type: ignore[no-any-return]
    raise AssertionError(f"KEDA's {kind} CRD has no version {version}")


@cache
def kafka_parameters() -> dict[str, Obj]:
    scalers = json.loads((keda_schemas() / "scalers-schema.json").read_text())
    (kafka,) = [s for s in scalers["scalers"] if s["type"] == "kafka"]
    return {p["name"]: p for p in kafka["parameters"] if not p.get("deprecated")}


def kafka_metadata_schema() -> Obj:
    """The kafka scaler's trigger metadata as JSON Schema, from its parameter list."""
    properties: dict[str, Obj] = {}
    needed = []
    for name, p in kafka_parameters().items():
        if p.get("metadataVariableReadable"):
            prop: Obj = {"type": "string"}
            if "allowedValue" in p:
                prop["enum"] = p["allowedValue"]
            elif p.get("default") in ("true", "false"):
                prop["enum"] = ["true", "false"]
            elif str(p.get("default", "")).isdigit():
                prop["pattern"] = "^[0-9]+$"
            properties[name] = prop
        if p.get("envVariableReadable"):
            properties[name + "FromEnv"] = {"type": "string", "minLength": 1}
        if not p.get("optional") and "default" not in p:
            needed.append(name)
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "allOf": [{"anyOf": [{"required": [n]}, {"required": [n + "FromEnv"]}]} for n in needed],
    }


def keda_objects(overlay: str) -> list[Obj]:
    return [o for o in rendered(overlay) if o["apiVersion"].startswith("keda.sh/")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_objects_validate_against_keda_crds(overlay: str) -> None:
    objects = keda_objects(overlay)
    assert {o["kind"] for o in objects} == {"ScaledObject", "TriggerAuthentication"}
    for obj in objects:
        schema = crd_schema(obj["kind"], obj["apiVersion"].split("/")[1])
        jsonschema.Draft7Validator(schema).validate(obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_trigger_metadata_is_what_the_kafka_scaler_reads(overlay: str) -> None:
    validator = jsonschema.Draft7Validator(kafka_metadata_schema())
    triggers = [t for so in by_kind(overlay, "ScaledObject") for t in so["spec"]["triggers"]]
    assert triggers
    for trigger in triggers:
        assert trigger["type"] == "kafka"
        errors = [e.message for e in validator.iter_errors(trigger["metadata"])]
        assert not errors, f"trigger {trigger.get('name')}: {errors}"
        assert int(trigger["metadata"]["lagThreshold"]) > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_trigger_authentication_reads_scaler_parameters_from_existing_secrets(
    overlay: str,
) -> None:
    readable = {
        n for n, p in kafka_parameters().items() if p.get("triggerAuthenticationVariableReadable")
    }
    auths = {a["metadata"]["name"]: a for a in by_kind(overlay, "TriggerAuthentication")}
    for auth in auths.values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["parameter"] in readable, f"kafka does not read {ref['parameter']!r}"
            assert ref["key"] in secret_data(named(overlay, "Secret", ref["name"]))
        assert {"sasl", "tls"} <= {r["parameter"] for r in auth["spec"]["secretTargetRef"]}
    for so in by_kind(overlay, "ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            assert trigger["authenticationRef"]["name"] in auths


# --- what the fleet needs ------------------------------------------------------------


def secret_data(secret: Obj) -> dict[str, str]:
    """A Secret's keys and values, `data` decoded and `stringData` over it."""
    values = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    return {**values, **secret.get("stringData", {})}


def env_of(
    overlay: str, container: Obj, secrets: dict[str, dict[str, str]] | None = None
) -> dict[str, str]:
    """The variables a container gets from envFrom and env (env wins, like Kubernetes).

    `secrets` stands in for the named Secrets' data where given (a cluster's own values).
    """

    def data(name: str) -> dict[str, str]:
        if secrets is not None and name in secrets:
            return secrets[name]
        return secret_data(named(overlay, "Secret", name))

    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named(overlay, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(data(source["secretRef"]["name"]))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        assert ref is not None, f"{var['name']}: only values and Secret keys are expected here"
        values = data(ref["name"])
        assert ref["key"] in values or ref.get("optional"), f"{var['name']}: no key {ref['key']}"
        if ref["key"] in values:
            env[var["name"]] = values[ref["key"]]
    return env


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a process with `env` runs with."""
    values = {k[len(PREFIX) :].lower(): v for k, v in env.items() if k.startswith(PREFIX)}
    return Settings.model_validate(values)


def setting(env: dict[str, str], name: str) -> Any:
    """The value of setting `name` that a process with `env` runs with."""
    return getattr(settings_of(env), name)


def pools(overlay: str) -> list[tuple[Obj, Obj]]:
    """(ScaledObject, the Deployment it scales) for every worker pool."""
    found = []
    for so in by_kind(overlay, "ScaledObject"):
        ref = so["spec"]["scaleTargetRef"]
        assert ref.get("kind", "Deployment") == "Deployment"
        found.append((so, named(overlay, "Deployment", ref["name"])))
    assert found
    return found


def container(deployment: Obj) -> Obj:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_inferfleet_variable_is_a_valid_setting(overlay: str) -> None:
    for c in all_containers(list(rendered(overlay))):
        env = env_of(overlay, c)
        unknown = [
            k
            for k in env
            if k.startswith(PREFIX) and k[len(PREFIX) :].lower() not in Settings.model_fields
        ]
        assert not unknown, f"container {c['name']} would refuse to start: {unknown}"
        setting(env, "worker_group")  # every value parses, or this raises naming it


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaled_objects_follow_both_lanes_of_their_pool(overlay: str) -> None:
    for so, deployment in pools(overlay):
        env = env_of(overlay, container(deployment))
        models = setting(env, "worker_models")
        triggers = so["spec"]["triggers"]
        topics = [t["metadata"].get("topic") for t in triggers]
        assert all(topics), "a kafka trigger without `topic` counts lag of unrelated topics"
        assert sorted(topics) == sorted(job_topic(m, lane) for m in models for lane in LANES)
        for t in triggers:
            meta = t["metadata"]
            assert meta["consumerGroup"] == setting(env, "worker_group")
            assert meta["bootstrapServers"] == setting(env, "kafka_bootstrap")
            # The worker starts a partition without a commit from its earliest record.
            assert meta["offsetResetPolicy"] == "earliest"
            assert meta["activationLagThreshold"] == "0", "jobs would wait forever at zero"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaled_objects_sum_the_lanes_and_scale_within_the_partitions(overlay: str) -> None:
    for so, deployment in pools(overlay):
        spec = so["spec"]
        env = env_of(overlay, container(deployment))
        assert spec["minReplicaCount"] == 0
        assert 1 <= spec["maxReplicaCount"] <= setting(env, "topic_partitions")
        assert spec["pollingInterval"] > 0
        assert spec["cooldownPeriod"] > 0
        assert spec["fallback"]["replicas"] <= spec["maxReplicaCount"]

        names = [t["name"] for t in spec["triggers"]]
        modifiers = spec["advanced"]["scalingModifiers"]
        terms = [term.strip() for term in modifiers["formula"].split("+")]
        assert sorted(terms) == sorted(names), "the formula must sum every named trigger"
        thresholds = {t["metadata"]["lagThreshold"] for t in spec["triggers"]}
        assert thresholds == {modifiers["target"]}
        assert modifiers["activationTarget"] == "0"
        # KEDA allows a fallback with scalingModifiers only on an AverageValue metric.
        assert modifiers["metricType"] == "AverageValue"

        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        down = behavior["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 300
        assert down["policies"], "scale-down steps must be bounded to avoid rebalance storms"
        assert behavior["scaleUp"]["policies"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_pods_probe_their_port_and_outlast_their_longest_batch(overlay: str) -> None:
    for _, deployment in pools(overlay):
        assert "replicas" not in deployment["spec"], "KEDA owns a pool's replica count"
        pod = deployment["spec"]["template"]["spec"]
        c = container(deployment)
        env = env_of(overlay, c)
        port = setting(env, "worker_http_port")
        assert port > 0
        assert setting(env, "worker_http_host") == "0.0.0.0", "probes could not reach it"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        paths = {}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = c[probe]["httpGet"]
            assert ports.get(get["port"], get["port"]) == port
            paths[probe] = get["path"]
        assert paths == {
            "startupProbe": "/healthz",
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }
        # A batch ends within max_poll_interval_ms, or the group takes its partitions.
        longest_batch_s = setting(env, "max_poll_interval_ms") / 1000
        assert pod["terminationGracePeriodSeconds"] > longest_batch_s


def test_gpu_workers_ask_for_a_gpu_and_prefer_cuda() -> None:
    for overlay, gpu in (("cpu", False), ("gpu", True)):
        for _, deployment in pools(overlay):
            c = container(deployment)
            providers = setting(env_of(overlay, c), "providers")
            resources = c["resources"]
            if gpu:
                assert resources["limits"]["nvidia.com/gpu"] == 1
                assert resources["requests"]["nvidia.com/gpu"] == 1
                assert providers[0] == "CUDAExecutionProvider"
            else:
                assert "nvidia.com/gpu" not in resources["limits"]
                assert providers == ["CPUExecutionProvider"]
    cpu_images = {container(d)["image"] for _, d in pools("cpu")}
    gpu_images = {container(d)["image"] for _, d in pools("gpu")}
    assert cpu_images.isdisjoint(gpu_images)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_the_projects_and_tagged(overlay: str) -> None:
    for c in all_containers(list(rendered(overlay))):
        name, _, tag = c["image"].partition(":")
        assert name in ("inferfleet-api", "inferfleet-worker")
        assert tag
        assert tag != "latest"


def commands(overlay: str) -> dict[str, Obj]:
    """Deployments and Jobs by the command line their one container runs."""
    found = {}
    for obj in by_kind(overlay, "Deployment") + by_kind(overlay, "Job"):
        c = obj["spec"]["template"]["spec"]["containers"][0]
        found[" ".join(c["command"])] = obj
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_beat_dispatchers_and_a_migration_job(overlay: str) -> None:
    by_command = commands(overlay)
    beat = by_command["python -m scheduler beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    assert by_command["python -m scheduler worker"]["spec"]["replicas"] >= 1
    assert by_command["inferfleet db upgrade"]["kind"] == "Job"
    api = by_command["inferfleet api --host 0.0.0.0 --port 8000"]
    assert api["kind"] == "Deployment"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_celery_queue_has_workers_of_its_own(overlay: str) -> None:
    """Deliveries never share a worker with ingest, sweeps or schedule firing."""
    from scheduler.app import QUEUES

    consumed: dict[str, list[str]] = {}
    for obj in by_kind(overlay, "Deployment"):
        c = container(obj)
        if c["command"] != ["python", "-m", "scheduler", "worker"]:
            continue
        args = c.get("args", [])
        assert "-Q" in args, f"{obj['metadata']['name']} consumes every queue"
        for queue in args[args.index("-Q") + 1].split(","):
            consumed.setdefault(queue, []).append(obj["metadata"]["name"])
    assert sorted(consumed) == sorted(QUEUES)
    assert all(len(names) == 1 for names in consumed.values()), consumed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_is_served_scaled_and_budgeted(overlay: str) -> None:
    api = named(overlay, "Deployment", "inferfleet-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = named(overlay, "Service", "inferfleet-api")
    assert service["spec"]["selector"].items() <= labels.items()
    assert "replicas" not in api["spec"], "the HPA owns the API's replica count"
    hpa = named(overlay, "HorizontalPodAutoscaler", "inferfleet-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "inferfleet-api"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    c = container(api)
    assert c["resources"]["requests"]["cpu"], "a CPU HPA needs a CPU request"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] in ("http", 8000)


def cores(quantity: str) -> float:
    """A Kubernetes CPU quantity (`2`, `1500m`) in cores."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_runs_a_process_per_requested_core_with_a_metrics_folder(overlay: str) -> None:
    c = container(named(overlay, "Deployment", "inferfleet-api"))
    args = c.get("args", [])
    workers = int(args[args.index("--workers") + 1])
    assert workers > 1
    assert cores(c["resources"]["requests"]["cpu"]) == workers
    folder = setting(env_of(overlay, c), "api_metrics_dir")
    assert folder is not None, "several processes need a folder for their metrics"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert str(folder) in mounts, f"{folder} is not mounted (the root filesystem is read-only)"
    spec = named(overlay, "Deployment", "inferfleet-api")["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == mounts[str(folder)])
    assert "emptyDir" in volume, "each pod starts with an empty metrics folder of its own"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_cover_every_deployment_but_beat(overlay: str) -> None:
    budgets = by_kind(overlay, "PodDisruptionBudget")
    for deployment in by_kind(overlay, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        expected = 0 if labels[WORKER] == "beat" else 1
        assert len(covering) == expected, deployment["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_referenced_config_exists(overlay: str) -> None:
    for c in all_containers(list(rendered(overlay))):
        env_of(overlay, c)  # names a missing ConfigMap or Secret, or passes


# --- Kafka security ------------------------------------------------------------------

# The setting each key of KEDA's Kafka Secret feeds (inferfleet/kafkasecurity.py).
KAFKA_SECRET_SETTINGS = {
    "tls": "INFERFLEET_KAFKA_TLS",
    "sasl": "INFERFLEET_KAFKA_SASL_MECHANISM",
    "username": "INFERFLEET_KAFKA_SASL_USERNAME",
    "password": "INFERFLEET_KAFKA_SASL_PASSWORD",
    "ca": "INFERFLEET_KAFKA_SSL_CA",
    "cert": "INFERFLEET_KAFKA_SSL_CERT",
    "key": "INFERFLEET_KAFKA_SSL_KEY",
}
# The commands whose processes make Kafka clients.
KAFKA_CLIENTS = {"inferfleet api", "python -m worker", "python -m scheduler worker -Q celery"}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def kafka_clients(overlay: str) -> list[Obj]:
    found = []
    for c in all_containers(list(rendered(overlay))):
        line = " ".join([*c.get("command", []), *c.get("args", [])[:2]])
        if any(line.startswith(command) for command in KAFKA_CLIENTS):
            found.append(c)
    assert len(found) >= len(KAFKA_CLIENTS)
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_clients_read_every_key_of_the_secret_keda_reads(overlay: str) -> None:
    (auth,) = by_kind(overlay, "TriggerAuthentication")
    refs = auth["spec"]["secretTargetRef"]
    (secret_name,) = {r["name"] for r in refs}
    assert {r["parameter"] for r in refs} == {r["key"] for r in refs} == set(KAFKA_SECRET_SETTINGS)
    for c in kafka_clients(overlay):
        read = {
            var["name"]: var["valueFrom"]["secretKeyRef"]
            for var in c.get("env", [])
            if "secretKeyRef" in var.get("valueFrom", {})
        }
        for key, variable in KAFKA_SECRET_SETTINGS.items():
            assert read.get(variable, {}).get("name") == secret_name, (c["name"], variable)
            assert read[variable]["key"] == key, (c["name"], variable)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_placeholder_secret_means_plaintext(overlay: str) -> None:
    for c in kafka_clients(overlay):
        settings = settings_of(env_of(overlay, c))
        assert settings.kafka_security().effective_protocol() == "PLAINTEXT"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_secret_filled_for_keda_gives_every_client_sasl_over_tls(overlay: str) -> None:
    filled = {
        "sasl": "scram_sha512",
        "tls": "enable",
        "username": "fleet",
        "password": "s3cret",
        "ca": PEM,
        "cert": "",
        "key": "",
    }
    for c in kafka_clients(overlay):
        settings = settings_of(env_of(overlay, c, secrets={"inferfleet-kafka": filled}))
        assert settings.kafka_security().effective_protocol() == "SASL_SSL", c["name"]
        assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
        assert settings.kafka_sasl_username == "fleet"
        assert settings.kafka_ssl_ca == PEM
        assert settings.kafka_ssl_cert is None
