#!/usr/bin/env python3
"""A Kubernetes API emulator for cdot-rmm's tests: PyPI's kmock 0.8 plus a shim.

    python3 cdot_kube_emulator.py --port 0 --crd charts/cdot-rmm/crds [--crd more.yaml ...]

prints ``listening on http://127.0.0.1:PORT`` once it serves, and serves until SIGTERM/SIGINT.

kmock gives the HTTP server (``kmock.Server``), the handler base class
(``kmock.KubernetesEmulator``), its request DSL and discovery endpoints (``/api``,
``/apis``, ``/apis/<group>[/<version>]``, ``/api/v1``, ``/``) fed from ``kmock.resources``,
and its error classes. kmock 0.8 falls short of what kube-rs's watcher, Controller,
finalizer helper and ``Api::replace``/``patch_status`` need (no resourceVersion, uid or
generation; lists without ``kind``; watches that replay everything; no PUT; status writes
merged into the whole object; a path parser that crashes on ``/api/v1/namespaces``;
non-standard error reasons; JSON-patch ``test`` of a missing path failing; storage scanned
linearly on every request). This subclass therefore routes every resource URL itself and
keeps objects in its own dicts, with a global resourceVersion and a bounded event history.

It is an emulator: it proves wiring, not API-server semantics. There is no schema
validation, defaulting, admission, RBAC, garbage collection or namespace cascade;
server-side apply and strategic merge are approximated by JSON merge patches.
"""
import argparse
import asyncio
import base64
import json
import os
import pathlib
import re
import secrets
import signal
import sys
import time
import traceback
import uuid

import aiohttp.web
import kmock
from kmock._internal import apps  # the DSL dispatcher, below kmock's own storage layer

VERBS = {'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'}
# (group, version, plural, kind, namespaced, status subresource, short names)
BUILTIN = [
    ('', 'v1', 'namespaces', 'Namespace', False, False, {'ns'}),
    ('', 'v1', 'secrets', 'Secret', True, False, set()),
    ('', 'v1', 'configmaps', 'ConfigMap', True, False, {'cm'}),
    ('', 'v1', 'events', 'Event', True, False, {'ev'}),
    ('events.k8s.io', 'v1', 'events', 'Event', True, False, {'ev'}),
    ('coordination.k8s.io', 'v1', 'leases', 'Lease', True, False, set()),
    ('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', 'CustomResourceDefinition', False, True,
     {'crd', 'crds'}),
]
CRD_SKEY = ('apiextensions.k8s.io', 'customresourcedefinitions')


def dumps(obj):
    return json.dumps(obj, separators=(',', ':')).encode()


def now():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def error(code, reason, message, **details):
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details or None)


def status_body(code, reason, message, details=None):
    body = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
            'message': message, 'reason': reason, 'code': code}
    if details:
        body['details'] = details
    return body


class Res:
    """One served resource: (group, version, plural) and what its objects look like."""
    __slots__ = ('group', 'version', 'plural', 'kind', 'namespaced', 'status', 'crd', 'skey', 'api_version',
                 'list_kind', 'gr')

    def __init__(self, group, version, plural, kind, namespaced, status, crd=False, list_kind=None):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.status, self.crd = namespaced, status, crd
        self.skey = (group, plural)  # objects are stored per group+plural, whatever the version
        self.api_version = f'{group}/{version}' if group else version
        self.list_kind = list_kind or f'{kind}List'
        self.gr = f'{plural}.{group}' if group else plural


class Entry:
    __slots__ = ('obj', 'raw', 'labels')

    def __init__(self, obj):
        self.obj, self.raw = obj, dumps(obj)
        self.labels = obj['metadata'].get('labels') or {}


class Watcher:
    __slots__ = ('ns', 'name', 'selector', 'buf', 'wake')

    def __init__(self, ns, name, selector):
        self.ns, self.name, self.selector = ns, name, selector
        self.buf, self.wake = [], asyncio.Event()

    def line(self, etype, ns, name, raw, labels, old_labels):
        """The watch line this watcher gets for an event, or None (the event is not its business)."""
        if (self.ns is not None and ns != self.ns) or (self.name is not None and name != self.name):
            return None
        if self.selector:
            new_ok = selector_match(self.selector, labels)
            if etype == b'MODIFIED':
                old_ok = selector_match(self.selector, old_labels)
                if not (new_ok or old_ok):
                    return None
                etype = b'MODIFIED' if new_ok and old_ok else b'ADDED' if new_ok else b'DELETED'
            elif not new_ok:
                return None
        return b'{"type":"' + etype + b'","object":' + raw + b'}\n'


# --- selectors ---------------------------------------------------------------------------
_SEL_TERM = re.compile(r'^\s*(?:(!)\s*([\w./-]+)|([\w./-]+)\s*(?:(==|=|!=)\s*([\w./-]*)|\s(in|notin)\s*\(([^)]*)\))?)\s*$')


def parse_selector(text):
    """labelSelector: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`, comma-joined."""
    if not text:
        return []
    terms, depth, cur = [], 0, ''
    for ch in text:
        depth += (ch == '(') - (ch == ')')
        if ch == ',' and depth == 0:
            terms.append(cur)
            cur = ''
        else:
            cur += ch
    terms.append(cur)
    result = []
    for term in terms:
        m = _SEL_TERM.match(term)
        if not m:
            raise error(400, 'BadRequest', f'unable to parse requirement: {term!r}')
        if m.group(1):
            result.append((m.group(2), '!', None))
        elif m.group(4):
            result.append((m.group(3), '!=' if m.group(4) == '!=' else '=', m.group(5)))
        elif m.group(6):
            result.append((m.group(3), m.group(6), {v.strip() for v in m.group(7).split(',')}))
        else:
            result.append((m.group(3), 'exists', None))
    return result


def selector_match(selector, labels):
    for key, op, value in selector:
        have = labels.get(key)
        if op == 'exists' and have is None or op == '!' and have is not None:
            return False
        if op == '=' and have != value or op == '!=' and have == value:
            return False
        if op == 'in' and have not in value or op == 'notin' and have in value:
            return False
    return True


def parse_fields(text):
    """fieldSelector: metadata.name and metadata.namespace, with =, == or !=."""
    result = []
    for term in filter(None, (text or '').split(',')):
        m = re.match(r'^\s*(metadata\.name|metadata\.namespace)\s*(==|=|!=)\s*([^,]*?)\s*$', term)
        if not m:
            raise error(400, 'BadRequest', f'field label not supported: {term}')
        result.append((m.group(1).split('.')[1], m.group(2) != '!=', m.group(3)))
    return result


# --- patches -----------------------------------------------------------------------------
def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), value)
    return target


def strategic_merge(target, patch):
    """Strategic merge approximated: `$deleteFromPrimitiveList/x` is honoured, other `$` directives dropped,
    lists are replaced (fine for the CRs and simple core kinds served here)."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if key.startswith('$deleteFromPrimitiveList/'):
            field = key.split('/', 1)[1]
            if isinstance(target.get(field), list):
                target[field] = [v for v in target[field] if v not in value]
        elif key.startswith('$'):
            continue
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = strategic_merge(target.get(key), value)
    return target


def _pointer(path):
    if path == '':
        return []
    if not path.startswith('/'):
        raise error(422, 'Invalid', f'invalid JSON pointer: {path!r}')
    return [t.replace('~1', '/').replace('~0', '~') for t in path[1:].split('/')]


_MISSING = object()


def _get(doc, tokens):
    for tok in tokens:
        if isinstance(doc, dict) and tok in doc:
            doc = doc[tok]
        elif isinstance(doc, list) and tok.isdigit() and int(tok) < len(doc):
            doc = doc[int(tok)]
        else:
            return _MISSING
    return doc


def json_patch(doc, ops):
    """RFC 6902; `test` of a missing path compares as null (as the API server's json-patch does)."""
    if not isinstance(ops, list):
        raise error(400, 'BadRequest', 'a JSON patch must be a list of operations')

    def fail(op, why):
        raise error(422, 'Invalid', f'the server rejected our request due to an error in our request: '
                                    f'{why} (op {json.dumps(op)})')

    def add(doc, tokens, value, op):
        if not tokens:
            return value
        parent = _get(doc, tokens[:-1])
        key = tokens[-1]
        if isinstance(parent, dict):
            parent[key] = value
        elif isinstance(parent, list):
            if key == '-':
                parent.append(value)
            elif key.isdigit() and int(key) <= len(parent):
                parent.insert(int(key), value)
            else:
                fail(op, 'index out of range')
        else:
            fail(op, 'missing path')
        return doc

    def remove(doc, tokens, op):
        if not tokens or _get(doc, tokens) is _MISSING:
            fail(op, 'missing path')
        parent = _get(doc, tokens[:-1])
        value = parent.pop(int(tokens[-1]) if isinstance(parent, list) else tokens[-1])
        return doc, value

    for op in ops:
        kind, tokens = op.get('op'), _pointer(op.get('path', ''))
        if kind == 'test':
            have = _get(doc, tokens)
            if (None if have is _MISSING else have) != op.get('value'):
                fail(op, 'test failed')
        elif kind == 'add':
            doc = add(doc, tokens, op.get('value'), op)
        elif kind == 'remove':
            doc, _ = remove(doc, tokens, op)
        elif kind == 'replace':
            if tokens and _get(doc, tokens) is _MISSING:
                fail(op, 'missing path')
            doc = add(remove(doc, tokens, op)[0], tokens, op.get('value'), op) if tokens else op.get('value')
        elif kind in ('move', 'copy'):
            source = _pointer(op.get('from', ''))
            value = _get(doc, source)
            if value is _MISSING:
                fail(op, 'missing from path')
            if kind == 'move':
                doc, value = remove(doc, source, op)
            else:
                value = json.loads(json.dumps(value))
            doc = add(doc, tokens, value, op)
        else:
            fail(op, f'unsupported op {kind!r}')
    return doc


# --- protobuf: kubectl's typed clients (`kubectl create namespace|secret|configmap`) send it ---
def _varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7f) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _pb_fields(buf):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire in (1, 5):
            value, i = buf[i:i + (8 if wire == 1 else 4)], i + (8 if wire == 1 else 4)
        else:
            raise error(400, 'BadRequest', 'malformed protobuf body')
        yield key >> 3, value


_PB_META = {1: ('name', 'str'), 2: ('generateName', 'str'), 3: ('namespace', 'str'), 6: ('resourceVersion', 'str'),
            11: ('labels', 'map'), 12: ('annotations', 'map'), 14: ('finalizers', 'list')}
_PB_KINDS = {  # field numbers of k8s.io/api/core/v1/generated.proto
    'Namespace': {1: ('metadata', _PB_META), 2: ('spec', {1: ('finalizers', 'list')})},
    'Secret': {1: ('metadata', _PB_META), 2: ('data', 'bytesmap'), 3: ('type', 'str'), 4: ('stringData', 'map'),
               5: ('immutable', 'bool')},
    'ConfigMap': {1: ('metadata', _PB_META), 2: ('data', 'map'), 3: ('binaryData', 'bytesmap'), 4: ('immutable', 'bool')},
}


def _pb_decode(buf, schema):
    out = {}
    for num, value in _pb_fields(buf):
        name, kind = schema.get(num, (None, None))
        if isinstance(kind, dict):
            out[name] = _pb_decode(value, kind)
        elif kind == 'str':
            out[name] = value.decode()
        elif kind == 'bool':
            out[name] = bool(value)
        elif kind == 'list':
            out.setdefault(name, []).append(value.decode())
        elif kind in ('map', 'bytesmap'):
            entry = dict(_pb_fields(value))
            data = entry.get(2, b'')
            out.setdefault(name, {})[entry.get(1, b'').decode()] = (
                base64.b64encode(data).decode() if kind == 'bytesmap' else data.decode())
    return out


def decode_protobuf(body):
    """The `k8s\\0` + runtime.Unknown envelope around a Namespace, Secret or ConfigMap."""
    if not body.startswith(b'k8s\x00'):
        raise error(400, 'BadRequest', 'a protobuf body must start with the k8s envelope')
    envelope = dict(_pb_fields(body[4:]))
    type_meta = dict(_pb_fields(envelope.get(1, b'')))
    api_version, kind = type_meta.get(1, b'').decode(), type_meta.get(2, b'').decode()
    if kind not in _PB_KINDS:
        raise error(415, 'UnsupportedMediaType', f'protobuf is only decoded for {sorted(_PB_KINDS)}, not {kind}')
    return dict(_pb_decode(envelope.get(2, b''), _PB_KINDS[kind]), apiVersion=api_version, kind=kind)


# --- the emulator ------------------------------------------------------------------------
class CdotKubeEmulator(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator with kube-rs-compatible object storage, watches and patches."""

    def __init__(self, *, history=100_000, bookmark_interval=5.0, verbose=False):
        super().__init__()
        self._res = {}  # (group, version, plural) -> Res
        self._store = {}  # (group, plural) -> {namespace or '': {name: Entry}}
        self._watchers = {}  # (group, plural) -> set of Watcher
        self._rv = 0  # the global resourceVersion: one per write, each write is one event
        self._hist = []  # (rv, skey, ns, name, type, raw, labels, old_labels), rv = first + index
        self._hist_first = 1
        self._hist_max = history
        self._bookmark_interval = bookmark_interval
        self._verbose = verbose
        self._stopping = False
        for *spec, shortnames in BUILTIN:
            self._add_res(Res(*spec)).shortnames = shortnames

    def __attrs_post_init__(self):
        # Only the scaffold's discovery/version/not-found reactions: the resource handlers of
        # kmock's own KubernetesEmulator are replaced by this class's routing.
        kmock.KubernetesScaffold.__attrs_post_init__(self)
        for path in ('/healthz', '/livez', '/readyz'):
            self[f'get {path}'] << b'ok'

    async def _serve_server_version(self, request):
        return {'major': '1', 'minor': '32', 'gitVersion': 'v1.32.0-cdot-kube-emulator',
                'platform': 'linux/amd64', 'compiler': 'gc'}

    async def _serve_version(self, request):
        body = await super()._serve_version(request)
        body['groupVersion'] = body['groupVersion'].lstrip('/')  # kmock says "/v1" for the core group
        for entry in body['resources']:  # kmock repeats the parent's names and verbs on subresources
            if '/' in entry['name']:
                entry.update(singularName='', shortNames=[], categories=[], verbs=['get', 'patch', 'update'])
        return body

    async def _handle(self, request):
        # Non-resource URLs (discovery, /version, unknown ones) go through kmock's DSL, not
        # through KubernetesEmulator._handle's object tracking.
        return await apps.RawHandler._handle(self, request)

    async def _render_error(self, exc):
        if isinstance(exc, kmock.KubernetesError):
            reason = 'NotFound' if exc.status == 404 else (exc.reason or 'InternalError')
            return self._json(status_body(exc.status, reason, exc.message or repr(exc), exc.details), exc.status)
        traceback.print_exception(exc, file=sys.stderr)
        return self._json(status_body(500, 'InternalError', repr(exc)), 500)

    @staticmethod
    def _json(body, status=200):
        raw = body if isinstance(body, bytes) else dumps(body)
        return aiohttp.web.Response(body=raw, status=status, content_type='application/json')

    # --- resources -------------------------------------------------------------------------
    def _add_res(self, res):
        self._res[(res.group, res.version, res.plural)] = res
        self._store.setdefault(res.skey, {})
        self.resources[kmock.resource(res.group, res.version, res.plural)] = kmock.ResourceInfo(
            kind=res.kind, namespaced=res.namespaced, verbs=VERBS, singular=res.kind.lower(),
            subresources={'status'} if res.status else set())
        return self.resources[kmock.resource(res.group, res.version, res.plural)]

    def _crd_resources(self, crd):
        spec = crd.get('spec') or {}
        names = spec.get('names') or {}
        for version in spec.get('versions') or []:
            if version.get('served', True):
                has_status = 'status' in (version.get('subresources') or {})
                res = Res(spec['group'], version['name'], names['plural'], names['kind'],
                          spec.get('scope', 'Namespaced') == 'Namespaced', has_status, crd=True,
                          list_kind=names.get('listKind'))
                info = (names.get('singular') or names['kind'].lower(), names.get('shortNames') or [],
                        names.get('categories') or [])
                yield res, info

    def _register_crd(self, crd):
        for res, (singular, shortnames, categories) in self._crd_resources(crd):
            info = self._add_res(res)
            info.singular, info.shortnames, info.categories = singular, set(shortnames), set(categories)
        conditions = (crd.get('status') or {}).get('conditions') or [
            {'type': t, 'status': 'True', 'reason': r, 'message': '', 'lastTransitionTime': now()}
            for t, r in (('NamesAccepted', 'NoConflicts'), ('Established', 'InitialNamesAccepted'))]
        crd['status'] = {
            'acceptedNames': (crd.get('spec') or {}).get('names') or {},
            'storedVersions': [v['name'] for v in crd['spec'].get('versions') or [] if v.get('storage')],
            'conditions': conditions,
        }

    def _unregister_crd(self, crd):
        for res, _ in self._crd_resources(crd):
            self._res.pop((res.group, res.version, res.plural), None)
            self._store.pop(res.skey, None)
            self._watchers.pop(res.skey, None)
            del self.resources[kmock.resource(res.group, res.version, res.plural)]

    def load_crd(self, crd):
        res = self._res[('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')]
        self._create(res, None, crd)

    # --- storage and events ------------------------------------------------------------------
    def _emit(self, res, ns, name, etype, entry, old_labels=None):
        self._hist.append((self._rv, res.skey, ns, name, etype, entry.raw, entry.labels, old_labels))
        if len(self._hist) > 2 * self._hist_max:
            cut = len(self._hist) - self._hist_max
            del self._hist[:cut]
            self._hist_first += cut
        for w in self._watchers.get(res.skey, ()):
            line = w.line(etype, ns, name, entry.raw, entry.labels, old_labels)
            if line is not None:
                w.buf.append(line)
                w.wake.set()

    def _stamp(self, obj):
        self._rv += 1
        obj['metadata']['resourceVersion'] = str(self._rv)
        return Entry(obj)

    def _lookup(self, res, ns, name):
        entry = self._store[res.skey].get(ns or '', {}).get(name)
        if entry is None:
            raise error(404, 'NotFound', f'{res.gr} "{name}" not found', name=name, group=res.group, kind=res.plural)
        return entry

    def _iter(self, res, ns):
        spaces = self._store[res.skey]
        for space in ([ns] if ns is not None else sorted(spaces)):
            objs = spaces.get(space, {})
            for name in sorted(objs):
                yield space, name, objs[name]

    @staticmethod
    def _fields_ok(fields, ns, name):
        return all((name if f == 'name' else ns) == v if eq else (name if f == 'name' else ns) != v
                   for f, eq, v in fields)

    @staticmethod
    def _secret_data(res, obj):
        if res.skey == ('', 'secrets') and isinstance(obj.get('stringData'), dict):
            data = obj.setdefault('data', {}) or {}
            for key, value in obj.pop('stringData').items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj['data'] = data

    def _create(self, res, ns, obj):
        if not isinstance(obj, dict):
            raise error(400, 'BadRequest', 'the body must be a JSON object')
        meta = obj.get('metadata')
        meta = obj['metadata'] = dict(meta) if isinstance(meta, dict) else {}
        name = meta.get('name')
        if not name and meta.get('generateName'):
            name = meta['generateName'] + secrets.token_hex(3)[:5]
        if not name:
            raise error(422, 'Invalid', f'{res.kind}.{res.group} is invalid: metadata.name: Required value')
        if res.namespaced:
            if ns is not None and meta.get('namespace') not in (None, '', ns):
                raise error(400, 'BadRequest', 'the namespace of the provided object does not match '
                                               'the namespace sent on the request')
            ns = ns or meta.get('namespace') or 'default'
            meta['namespace'] = ns
        else:
            ns = None
            meta.pop('namespace', None)
        space = self._store[res.skey].setdefault(ns or '', {})
        if name in space:
            raise error(409, 'AlreadyExists', f'{res.gr} "{name}" already exists', name=name,
                        group=res.group, kind=res.plural)
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=now())
        for key in ('deletionTimestamp', 'deletionGracePeriodSeconds', 'resourceVersion', 'generation'):
            meta.pop(key, None)
        if res.crd or res.skey == CRD_SKEY:
            meta['generation'] = 1
        obj['apiVersion'], obj['kind'] = res.api_version, res.kind
        if res.status:
            obj.pop('status', None)
        self._secret_data(res, obj)
        if res.skey == ('', 'namespaces'):
            obj['status'] = {'phase': 'Active'}
        if res.skey == CRD_SKEY:
            self._register_crd(obj)
        entry = space[name] = self._stamp(obj)
        self._emit(res, ns, name, b'ADDED', entry)
        return 201, entry.raw

    def _write(self, res, ns, name, old, new, subresource, put=False):
        """Stores `new` (a whole object, from a PUT body or a patched copy) as the next version of `old`."""
        if not isinstance(new, dict) or not isinstance(new.get('metadata', {}), dict):
            raise error(400, 'BadRequest', 'the body must be a JSON object with object metadata')
        old_meta = old.obj['metadata']
        want_rv = new.get('metadata', {}).get('resourceVersion')
        if put and res.crd and not want_rv:
            raise error(422, 'Invalid', f'{res.kind}.{res.group} "{name}" is invalid: metadata.resourceVersion: '
                                        'Invalid value: 0x0: must be specified for an update')
        if want_rv and want_rv != old_meta['resourceVersion']:
            raise error(409, 'Conflict', f'Operation cannot be fulfilled on {res.gr} "{name}": the object has been '
                                         'modified; please apply your changes to the latest version and try again',
                        name=name, group=res.group, kind=res.plural)
        if put and new.get('metadata', {}).get('name') not in (None, name):
            raise error(400, 'BadRequest', 'the name of the object does not match the name on the URL')
        if subresource == 'status':
            result = json.loads(old.raw)
            if 'status' in new:
                result['status'] = new['status']
            else:
                result.pop('status', None)
        else:
            result = new
            meta = result['metadata'] = dict(result.get('metadata') or {})
            for key in ('name', 'namespace', 'uid', 'creationTimestamp', 'deletionTimestamp',
                        'deletionGracePeriodSeconds', 'generation'):
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            result['apiVersion'], result['kind'] = old.obj['apiVersion'], old.obj['kind']
            if res.status:
                if 'status' in old.obj:
                    result['status'] = old.obj['status']
                else:
                    result.pop('status', None)
            self._secret_data(res, result)
        meta = result['metadata']
        meta['resourceVersion'] = old_meta['resourceVersion']
        if 'generation' in old_meta:
            content = {k: v for k, v in result.items() if k not in ('metadata', 'status')}
            if content != {k: v for k, v in old.obj.items() if k not in ('metadata', 'status')}:
                meta['generation'] = old_meta['generation'] + 1
        if res.skey == CRD_SKEY and subresource != 'status':
            self._register_crd(result)
        if result == old.obj:
            return 200, old.raw  # a no-op write changes nothing, not even the resourceVersion
        if meta.get('deletionTimestamp') and not meta.get('finalizers'):
            return self._remove(res, ns, name, result, old)
        entry = self._store[res.skey][ns or ''][name] = self._stamp(result)
        self._emit(res, ns, name, b'MODIFIED', entry, old.labels)
        return 200, entry.raw

    def _remove(self, res, ns, name, obj, old):
        del self._store[res.skey][ns or ''][name]
        entry = self._stamp(obj)
        self._emit(res, ns, name, b'DELETED', entry, old.labels)
        if res.skey == CRD_SKEY:
            self._unregister_crd(obj)
        return 200, entry.raw

    def _delete(self, res, ns, name, options):
        old = self._lookup(res, ns, name)
        meta = old.obj['metadata']
        pre = (options or {}).get('preconditions') or {}
        if pre.get('uid') not in (None, meta['uid']) or pre.get('resourceVersion') not in (None, meta['resourceVersion']):
            raise error(409, 'Conflict', f'Precondition failed for {res.gr} "{name}"', name=name, kind=res.plural)
        if meta.get('deletionTimestamp'):
            return 200, old.raw
        obj = json.loads(old.raw)
        if not meta.get('finalizers'):
            return self._remove(res, ns, name, obj, old)
        obj['metadata'].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
        if 'generation' in meta:  # as the API server does, so that generation-filtered controllers see it
            obj['metadata']['generation'] = meta['generation'] + 1
        entry = self._store[res.skey][ns or ''][name] = self._stamp(obj)
        self._emit(res, ns, name, b'MODIFIED', entry, old.labels)
        return 200, entry.raw

    def _patch(self, res, ns, name, subresource, ctype, body):
        ctype = ctype.split(';')[0].strip().lower()
        apply = ctype == 'application/apply-patch+yaml'
        try:
            patch = json.loads(body or b'null')
        except ValueError:
            if not apply:
                raise error(400, 'BadRequest', 'the patch is not valid JSON')
            import yaml  # apply patches may be YAML
            patch = yaml.load(body, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))
        space = self._store[res.skey].get(ns or '', {})
        if apply and name not in space and subresource is None:
            patch = dict(patch or {}, metadata=dict((patch or {}).get('metadata') or {}, name=name))
            return self._create(res, ns, patch)
        old = self._lookup(res, ns, name)
        doc = json.loads(old.raw)
        if ctype == 'application/json-patch+json':
            new = json_patch(doc, patch)
        elif ctype == 'application/merge-patch+json' or apply:
            new = merge_patch(doc, patch)
        elif ctype == 'application/strategic-merge-patch+json':
            new = strategic_merge(doc, patch)
        else:
            raise error(415, 'UnsupportedMediaType', f'the body of the request was in an unknown format: {ctype}')
        return self._write(res, ns, name, old, new, subresource)

    def _list(self, res, ns, query):
        selector, fields = parse_selector(query.get('labelSelector')), parse_fields(query.get('fieldSelector'))
        items = [e.raw for space, name, e in self._iter(res, ns)
                 if (not fields or self._fields_ok(fields, space or None, name))
                 and (not selector or selector_match(selector, e.labels))]
        head = dumps({'kind': res.list_kind, 'apiVersion': res.api_version,
                      'metadata': {'resourceVersion': str(self._rv)}})
        return 200, head[:-1] + b',"items":[' + b','.join(items) + b']}'

    def _delete_collection(self, res, ns, query):
        selector, fields = parse_selector(query.get('labelSelector')), parse_fields(query.get('fieldSelector'))
        doomed = [(space, name) for space, name, e in self._iter(res, ns)
                  if self._fields_ok(fields, space or None, name) and selector_match(selector, e.labels)]
        items = [self._delete(res, space or None, name, None)[1] for space, name in doomed]
        head = dumps({'kind': res.list_kind, 'apiVersion': res.api_version,
                      'metadata': {'resourceVersion': str(self._rv)}})
        return 200, head[:-1] + b',"items":[' + b','.join(items) + b']}'

    # --- watch -------------------------------------------------------------------------------
    def _bookmark(self, res, initial_end=False):
        meta = {'resourceVersion': str(self._rv)}
        if initial_end:
            meta['annotations'] = {'k8s.io/initial-events-end': 'true'}
        return dumps({'type': 'BOOKMARK', 'object': {'kind': res.kind, 'apiVersion': res.api_version,
                                                        'metadata': meta}}) + b'\n'

    async def _watch(self, raw_request, res, ns, name, query):
        selector, fields = parse_selector(query.get('labelSelector')), parse_fields(query.get('fieldSelector'))
        for field, eq, value in fields:
            if not eq:
                raise error(400, 'BadRequest', 'only equality field selectors are supported on watches')
            if field == 'name':
                name = value
            elif ns is None:
                ns = value
            elif ns != value:
                name = '\0'  # never matches
        w = Watcher(ns, name, selector)
        rv = query.get('resourceVersion') or '0'
        send_initial = query.get('sendInitialEvents') == 'true'
        bookmarks = query.get('allowWatchBookmarks') == 'true'
        initial, gone = [], None
        if send_initial or rv == '0':
            for space, oname, e in self._iter(res, ns):
                line = w.line(b'ADDED', space or None, oname, e.raw, e.labels, None)
                if line is not None:
                    initial.append(line)
        else:
            try:
                since = int(rv)
            except ValueError:
                raise error(400, 'BadRequest', f'invalid resourceVersion {rv!r}')
            if since < self._hist_first - 1 or since > self._rv:
                # Older than the history, or from another emulator's life: make the client relist.
                gone = dumps({'type': 'ERROR', 'object': status_body(
                    410, 'Expired', f'too old resource version: {since} ({self._hist_first - 1})')}) + b'\n'
            else:
                for ev in self._hist[max(0, since + 1 - self._hist_first):]:
                    if ev[1] == res.skey:
                        line = w.line(ev[4], ev[2], ev[3], ev[5], ev[6], ev[7])
                        if line is not None:
                            initial.append(line)
        if send_initial:
            initial.append(self._bookmark(res, initial_end=True))
        elif bookmarks and gone is None:
            initial.append(self._bookmark(res))
        # Snapshot and registration happen with no await in between: no event is lost or doubled.
        self._watchers.setdefault(res.skey, set()).add(w)
        loop = asyncio.get_running_loop()
        try:
            timeout = float(query.get('timeoutSeconds') or 1800)
        except ValueError:
            timeout = 1800.0
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self._bookmark_interval
        response = aiohttp.web.StreamResponse(status=200, headers={'Content-Type': 'application/json'})
        try:
            await response.prepare(raw_request)
            await response.write(b''.join(initial) + (gone or b''))
            while gone is None and not self._stopping:
                if w.buf:
                    chunk = b''.join(w.buf)
                    w.buf.clear()
                    await response.write(chunk)
                    continue
                t = loop.time()
                if t >= deadline:
                    break
                if bookmarks and t >= next_bookmark:
                    await response.write(self._bookmark(res))  # nothing pending: the global rv is safe
                    next_bookmark = t + self._bookmark_interval
                    continue
                w.wake.clear()
                try:
                    async with asyncio.timeout(min(deadline, next_bookmark if bookmarks else deadline) - t):
                        await w.wake.wait()
                except TimeoutError:
                    pass
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            self._watchers.get(res.skey, set()).discard(w)
        return response

    # --- routing -----------------------------------------------------------------------------
    def _route(self, path):
        parts = path.strip('/').split('/')
        if parts[0] == 'api' and len(parts) >= 3:
            group, version, rest = '', parts[1], parts[2:]
        elif parts[0] == 'apis' and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        watch = rest[0] == 'watch'
        if watch:
            rest = rest[1:]
            if not rest:
                return None
        if rest[0] == 'namespaces' and len(rest) >= 3 and (group, version, rest[2]) in self._res:
            ns, rest = rest[1], rest[2:]
        else:
            ns = None
        return (group, version, rest[0], ns, rest[1] if len(rest) > 1 else None,
                '/'.join(rest[2:]) or None, watch)

    async def __call__(self, raw_request):
        route = self._route(raw_request.path)
        if route is None:
            return await super().__call__(raw_request)  # kmock: discovery, /version, 404s
        started = time.perf_counter()
        try:
            response = await self._serve(raw_request, *route)
        except kmock.KubernetesError as e:
            response = await self._render_error(e)
        except Exception as e:
            response = await self._render_error(e)
        if self._verbose:
            print(f'{raw_request.method} {raw_request.path_qs} -> {response.status} '
                  f'({(time.perf_counter() - started) * 1000:.1f} ms)', file=sys.stderr, flush=True)
        return response

    async def _serve(self, raw_request, group, version, plural, ns, name, sub, watch):
        res = self._res.get((group, version, plural))
        if res is None or (ns is not None and not res.namespaced) or (name is not None and res.namespaced and ns is None):
            raise error(404, 'NotFound', 'the server could not find the requested resource')
        if sub not in (None, 'status') or (sub == 'status' and not res.status):
            raise error(404, 'NotFound', 'the server could not find the requested resource')
        raw_request._client_max_size = 64 << 20
        body = await raw_request.read()
        query, method = raw_request.query, raw_request.method
        if 'protobuf' in raw_request.headers.get('Content-Type', ''):
            body = dumps(decode_protobuf(body))
        if method == 'GET':
            if watch or query.get('watch') in ('1', 'true', 'True'):
                return await self._watch(raw_request, res, ns, name, query)
            status, raw = self._list(res, ns, query) if name is None else (200, self._lookup(res, ns, name).raw)
        elif name is None and method == 'POST':
            status, raw = self._create(res, ns, self._body(body))
        elif name is None and method == 'DELETE':
            status, raw = self._delete_collection(res, ns, query)
        elif name is None:
            raise error(405, 'MethodNotAllowed', f'{method} is not supported on a collection')
        elif method == 'PUT':
            status, raw = self._write(res, ns, name, self._lookup(res, ns, name), self._body(body), sub, put=True)
        elif method == 'PATCH':
            status, raw = self._patch(res, ns, name, sub, raw_request.headers.get('Content-Type', ''), body)
        elif method == 'DELETE' and sub is None:
            status, raw = self._delete(res, ns, name, self._body(body) if body.strip() else None)
        else:
            raise error(405, 'MethodNotAllowed', f'{method} is not supported here')
        return self._json(raw, status)

    @staticmethod
    def _body(body):
        try:
            return json.loads(body)
        except ValueError:
            raise error(400, 'BadRequest', 'the request body is not valid JSON (YAML and protobuf are not served)')

    def stop(self):
        self._stopping = True
        for watchers in self._watchers.values():
            for w in watchers:
                w.wake.set()


def load_documents(paths):
    """CRDs from files (YAML, multi-document, or JSON) and from directories of such files."""
    files = []
    for path in map(pathlib.Path, paths):
        files += sorted(p for p in path.iterdir() if p.suffix in ('.yaml', '.yml', '.json')) if path.is_dir() else [path]
    docs = []
    for file in files:
        text = file.read_text()
        if file.suffix == '.json':
            doc = json.loads(text)
            docs += doc if isinstance(doc, list) else [doc]
        else:
            import yaml
            docs += [d for d in yaml.load_all(text, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader)) if d]
    return docs


async def serve(args):
    emulator = CdotKubeEmulator(history=args.history, bookmark_interval=args.bookmark_interval,
                                verbose=args.verbose)
    for doc in load_documents(args.crd):
        if doc.get('kind') != 'CustomResourceDefinition':
            raise SystemExit(f'--crd: not a CustomResourceDefinition: {doc.get("kind")} {doc.get("metadata")}')
        emulator.load_crd(doc)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with emulator, kmock.Server(emulator, host=args.host, port=args.port) as server:
        print(f'listening on http://{args.host}:{server.port}', flush=True)
        await stop.wait()
        emulator.stop()  # watch streams end cleanly...
        await asyncio.sleep(0.05)
        sys.stdout.flush()
        os._exit(0)  # ...and nothing is worth waiting for in aiohttp's graceful shutdown


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=0, help='0: any free port (see the ready line)')
    parser.add_argument('--crd', action='append', default=[], metavar='FILE_OR_DIR',
                        help='CustomResourceDefinition YAML/JSON file, or a directory of them (repeatable)')
    parser.add_argument('--history', type=int, default=100_000, help='watch events kept for resourceVersion resumes')
    parser.add_argument('--bookmark-interval', type=float, default=5.0, help='seconds between watch BOOKMARKs')
    parser.add_argument('--verbose', '-v', action='store_true', help='log every resource request to stderr')
    args = parser.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    os._exit(0)


if __name__ == '__main__':
    main()
