// Test-only libsignal oracle for the Tidings interop tests and benchmark.
//
// Usage: node peer.mjs <libsignal version>     (0.72.1 or 0.90.0)
//
// Reads one JSON command per line on stdin and writes one JSON answer per line on stdout:
//   -> {"id": 1, "cmd": "new_party", "party": "bob", ...}
//   <- {"id": 1, "ok": true, "result": {...}}   or   {"id": 1, "ok": false, "error": {...}}
// Bytes travel as base64. Each "party" has its own in-memory stores, which keep every record
// serialized (deserialized on load, serialized on save) exactly like a persistent client store.
//
// The libsignal packages are AGPL and test-only: nothing under src/ may import this file.

import { createRequire } from 'node:module';
import { randomInt, randomUUID } from 'node:crypto';
import readline from 'node:readline';

const VERSIONS = { '0.72.1': 'libsignal-072', '0.90.0': 'libsignal-090' };
const version = process.argv[2] ?? '0.72.1';
if (!(version in VERSIONS)) {
  process.stderr.write(`unknown libsignal version ${version}\n`);
  process.exit(2);
}
const require = createRequire(import.meta.url);
const S = require(VERSIONS[version]);
const KYBER_REQUIRED = version !== '0.72.1';

const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const unb64 = (text) => {
  // A fresh, exactly-sized buffer: some bindings want a whole ArrayBuffer.
  const decoded = Buffer.from(text, 'base64');
  const out = new Uint8Array(new ArrayBuffer(decoded.length));
  out.set(decoded);
  return out;
};
const utf8 = (text) => {
  const encoded = Buffer.from(text, 'utf8');
  const out = new Uint8Array(new ArrayBuffer(encoded.length));
  out.set(encoded);
  return out;
};
const addrKey = (address) => `${address.name()}.${address.deviceId()}`;
const toAddress = (a) => S.ProtocolAddress.new(a.name, a.device_id);

class Stores {
  constructor(identity, registrationId) {
    this.identity = identity;
    this.registrationId = registrationId;
    this.sessions = new Map();
    this.identities = new Map();
    this.preKeys = new Map();
    this.signedPreKeys = new Map();
    this.kyberPreKeys = new Map();
    this.senderKeys = new Map();
    this.nextId = 1;
    // Records are kept serialized, like a client's database; `skip` loops switch to keeping
    // the objects so that tens of thousands of throwaway messages stay fast.
    this.keepObjects = false;
    const self = this;

    this.sessionStore = new (class extends S.SessionStore {
      async saveSession(address, record) {
        self.sessions.set(addrKey(address), self.keepObjects ? record : record.serialize());
      }
      async getSession(address) {
        const raw = self.sessions.get(addrKey(address));
        if (raw === undefined) return null;
        return raw instanceof S.SessionRecord ? raw : S.SessionRecord.deserialize(raw);
      }
      async getExistingSessions(addresses) {
        return addresses.map((a) => {
          const raw = self.sessions.get(addrKey(a));
          if (raw === undefined) throw new Error(`no session for ${addrKey(a)}`);
          return raw instanceof S.SessionRecord ? raw : S.SessionRecord.deserialize(raw);
        });
      }
    })();

    this.identityStore = new (class extends S.IdentityKeyStore {
      async getIdentityKey() {
        return self.identity.privateKey;
      }
      async getLocalRegistrationId() {
        return self.registrationId;
      }
      async saveIdentity(address, key) {
        const k = addrKey(address);
        const old = self.identities.get(k);
        self.identities.set(k, Buffer.from(key.serialize()));
        return old !== undefined && !old.equals(Buffer.from(key.serialize())) ? 1 : 0;
      }
      async isTrustedIdentity(address, key) {
        const old = self.identities.get(addrKey(address));
        return old === undefined || old.equals(Buffer.from(key.serialize()));
      }
      async getIdentity(address) {
        const old = self.identities.get(addrKey(address));
        return old === undefined ? null : S.PublicKey.deserialize(old);
      }
    })();

    this.preKeyStore = new (class extends S.PreKeyStore {
      async savePreKey(id, record) {
        self.preKeys.set(id, record.serialize());
      }
      async getPreKey(id) {
        const raw = self.preKeys.get(id);
        if (raw === undefined) throw new Error(`no prekey ${id}`);
        return S.PreKeyRecord.deserialize(raw);
      }
      async removePreKey(id) {
        self.preKeys.delete(id);
      }
    })();

    this.signedPreKeyStore = new (class extends S.SignedPreKeyStore {
      async saveSignedPreKey(id, record) {
        self.signedPreKeys.set(id, record.serialize());
      }
      async getSignedPreKey(id) {
        const raw = self.signedPreKeys.get(id);
        if (raw === undefined) throw new Error(`no signed prekey ${id}`);
        return S.SignedPreKeyRecord.deserialize(raw);
      }
    })();

    this.kyberPreKeyStore = new (class extends S.KyberPreKeyStore {
      async saveKyberPreKey(id, record) {
        self.kyberPreKeys.set(id, record.serialize());
      }
      async getKyberPreKey(id) {
        const raw = self.kyberPreKeys.get(id);
        if (raw === undefined) throw new Error(`no kyber prekey ${id}`);
        return S.KyberPreKeyRecord.deserialize(raw);
      }
      async markKyberPreKeyUsed() {
        // Last-resort semantics: keep the key.
      }
    })();

    this.senderKeyStore = new (class extends S.SenderKeyStore {
      async saveSenderKey(sender, distributionId, record) {
        self.senderKeys.set(`${addrKey(sender)}::${distributionId}`, record.serialize());
      }
      async getSenderKey(sender, distributionId) {
        const raw = self.senderKeys.get(`${addrKey(sender)}::${distributionId}`);
        return raw === undefined ? null : S.SenderKeyRecord.deserialize(raw);
      }
    })();
  }

  makeBundle(deviceId, withKyber, withPreKey) {
    const ts = Date.now();
    const priv = this.identity.privateKey;
    let preKeyId = null;
    let preKeyPublic = null;
    if (withPreKey) {
      preKeyId = this.nextId++;
      const pk = S.PrivateKey.generate();
      this.preKeys.set(preKeyId, S.PreKeyRecord.new(preKeyId, pk.getPublicKey(), pk).serialize());
      preKeyPublic = pk.getPublicKey();
    }
    const spkId = this.nextId++;
    const spk = S.PrivateKey.generate();
    const spkSig = priv.sign(spk.getPublicKey().serialize());
    this.signedPreKeys.set(
      spkId,
      S.SignedPreKeyRecord.new(spkId, ts, spk.getPublicKey(), spk, spkSig).serialize(),
    );
    let kyberId = null;
    let kyberPublic = null;
    let kyberSig = null;
    if (withKyber) {
      kyberId = this.nextId++;
      const kp = S.KEMKeyPair.generate();
      kyberSig = priv.sign(kp.getPublicKey().serialize());
      this.kyberPreKeys.set(kyberId, S.KyberPreKeyRecord.new(kyberId, ts, kp, kyberSig).serialize());
      kyberPublic = kp.getPublicKey();
    }
    return {
      registration_id: this.registrationId,
      device_id: deviceId,
      prekey_id: preKeyId,
      prekey: preKeyPublic === null ? null : b64(preKeyPublic.serialize()),
      signed_prekey_id: spkId,
      signed_prekey: b64(spk.getPublicKey().serialize()),
      signed_prekey_signature: b64(spkSig),
      identity_key: b64(this.identity.publicKey.serialize()),
      kyber_prekey_id: kyberId,
      kyber_prekey: kyberPublic === null ? null : b64(kyberPublic.serialize()),
      kyber_prekey_signature: kyberSig === null ? null : b64(kyberSig),
    };
  }
}

function bundleFromJson(b) {
  const hasPreKey = b.prekey_id !== null && b.prekey_id !== undefined;
  const hasKyber = b.kyber_prekey_id !== null && b.kyber_prekey_id !== undefined;
  const args = [
    b.registration_id,
    b.device_id,
    hasPreKey ? b.prekey_id : null,
    hasPreKey ? S.PublicKey.deserialize(unb64(b.prekey)) : null,
    b.signed_prekey_id,
    S.PublicKey.deserialize(unb64(b.signed_prekey)),
    unb64(b.signed_prekey_signature),
    S.PublicKey.deserialize(unb64(b.identity_key)),
  ];
  if (hasKyber) {
    args.push(
      b.kyber_prekey_id,
      S.KEMPublicKey.deserialize(unb64(b.kyber_prekey)),
      unb64(b.kyber_prekey_signature),
    );
  } else if (KYBER_REQUIRED) {
    throw new Error(`libsignal ${version} requires a Kyber prekey in every bundle`);
  } else {
    args.push(null, null, null);
  }
  return S.PreKeyBundle.new(...args);
}

function describeError(e) {
  const code = typeof e?.code === 'number' ? e.code : null;
  const codeName = code !== null && S.ErrorCode ? S.ErrorCode[code] ?? null : null;
  return { code, code_name: codeName, name: e?.name ?? 'Error', message: String(e?.message ?? e) };
}

const parties = new Map();

function party(name) {
  const p = parties.get(name);
  if (p === undefined) throw new Error(`unknown party ${name}`);
  return p;
}

function newParty(name, registrationId, deviceId) {
  const p = {
    name,
    deviceId: deviceId ?? 1,
    stores: new Stores(S.IdentityKeyPair.generate(), registrationId ?? randomInt(1, 16380)),
  };
  parties.set(name, p);
  return p;
}

async function decryptOne(st, address, msg) {
  const body = unb64(msg.body);
  if (msg.type === 3) {
    return S.signalDecryptPreKey(
      S.PreKeySignalMessage.deserialize(body),
      address,
      st.sessionStore,
      st.identityStore,
      st.preKeyStore,
      st.signedPreKeyStore,
      st.kyberPreKeyStore,
    );
  }
  if (msg.type === 2) {
    return S.signalDecrypt(
      S.SignalMessage.deserialize(body),
      address,
      st.sessionStore,
      st.identityStore,
    );
  }
  throw new Error(`unknown message type ${msg.type}`);
}

const elapsed = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;

// Benchmarks, timed inside Node so that the pipe does not count.
async function benchSetup(n, kyber) {
  let total = 0;
  const msg = new Uint8Array(new ArrayBuffer(100));
  for (let i = 0; i < n; i++) {
    const a = newParty(`bench-a-${i}`, 1, 1);
    const b = newParty(`bench-b-${i}`, 2, 1);
    const bundle = bundleFromJson(b.stores.makeBundle(1, kyber, true));
    const aAddr = S.ProtocolAddress.new(a.name, 1);
    const bAddr = S.ProtocolAddress.new(b.name, 1);
    const t0 = process.hrtime.bigint();
    await S.processPreKeyBundle(bundle, bAddr, a.stores.sessionStore, a.stores.identityStore);
    const ct = await S.signalEncrypt(msg, bAddr, a.stores.sessionStore, a.stores.identityStore);
    await decryptOne(b.stores, aAddr, { type: ct.type(), body: b64(ct.serialize()) });
    total += elapsed(t0);
    parties.delete(a.name);
    parties.delete(b.name);
  }
  return { n, seconds: total };
}

async function benchSession(n, mode, size, kyber, keepObjects) {
  const a = newParty('bench-sa', 1, 1);
  const b = newParty('bench-sb', 2, 1);
  a.stores.keepObjects = keepObjects;
  b.stores.keepObjects = keepObjects;
  const aAddr = S.ProtocolAddress.new(a.name, 1);
  const bAddr = S.ProtocolAddress.new(b.name, 1);
  const bundle = bundleFromJson(b.stores.makeBundle(1, kyber, true));
  await S.processPreKeyBundle(bundle, bAddr, a.stores.sessionStore, a.stores.identityStore);
  const msg = new Uint8Array(new ArrayBuffer(size));
  const send = async (from, to, toAddr, fromAddr) => {
    const ct = await S.signalEncrypt(msg, toAddr, from.stores.sessionStore, from.stores.identityStore);
    const body = ct.serialize();
    if (ct.type() === 3) {
      await S.signalDecryptPreKey(
        S.PreKeySignalMessage.deserialize(body),
        fromAddr,
        to.stores.sessionStore,
        to.stores.identityStore,
        to.stores.preKeyStore,
        to.stores.signedPreKeyStore,
        to.stores.kyberPreKeyStore,
      );
    } else {
      await S.signalDecrypt(
        S.SignalMessage.deserialize(body),
        fromAddr,
        to.stores.sessionStore,
        to.stores.identityStore,
      );
    }
  };
  // Establish both directions before timing.
  await send(a, b, bAddr, aAddr);
  await send(b, a, aAddr, bAddr);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    if (mode === 'alternating' && i % 2 === 1) {
      await send(b, a, aAddr, bAddr);
    } else {
      await send(a, b, bAddr, aAddr);
    }
  }
  const seconds = elapsed(t0);
  parties.delete(a.name);
  parties.delete(b.name);
  return { n, seconds };
}

async function benchSenderKeys(n, size) {
  const a = newParty('bench-ka', 1, 1);
  const b = newParty('bench-kb', 2, 1);
  const aAddr = S.ProtocolAddress.new(a.name, 1);
  const dist = randomUUID();
  const skdm = await S.SenderKeyDistributionMessage.create(aAddr, dist, a.stores.senderKeyStore);
  await S.processSenderKeyDistributionMessage(
    aAddr,
    S.SenderKeyDistributionMessage.deserialize(skdm.serialize()),
    b.stores.senderKeyStore,
  );
  const msg = new Uint8Array(new ArrayBuffer(size));
  let encSeconds = 0;
  let decSeconds = 0;
  for (let i = 0; i < n; i++) {
    let t0 = process.hrtime.bigint();
    const ct = await S.groupEncrypt(aAddr, dist, a.stores.senderKeyStore, msg);
    const body = ct.serialize();
    encSeconds += elapsed(t0);
    t0 = process.hrtime.bigint();
    await S.groupDecrypt(aAddr, b.stores.senderKeyStore, body);
    decSeconds += elapsed(t0);
  }
  parties.delete(a.name);
  parties.delete(b.name);
  return { n, encrypt_seconds: encSeconds, decrypt_seconds: decSeconds };
}

const handlers = {
  async version() {
    return { version };
  },

  async new_party(c) {
    const p = newParty(c.party, c.registration_id, c.device_id);
    return {
      identity_key: b64(p.stores.identity.publicKey.serialize()),
      registration_id: p.stores.registrationId,
      device_id: p.deviceId,
    };
  },

  async make_bundle(c) {
    const p = party(c.party);
    const kyber = c.kyber ?? true;
    if (!kyber && KYBER_REQUIRED) throw new Error(`libsignal ${version} requires Kyber`);
    return p.stores.makeBundle(p.deviceId, kyber, c.prekey ?? true);
  },

  async process_bundle(c) {
    const p = party(c.party);
    await S.processPreKeyBundle(
      bundleFromJson(c.bundle),
      toAddress(c.address),
      p.stores.sessionStore,
      p.stores.identityStore,
    );
    return {};
  },

  async encrypt(c) {
    const p = party(c.party);
    const address = toAddress(c.address);
    const empty = new Uint8Array(new ArrayBuffer(0));
    p.stores.keepObjects = true;
    try {
      for (let i = 0; i < (c.skip ?? 0); i++) {
        await S.signalEncrypt(empty, address, p.stores.sessionStore, p.stores.identityStore);
      }
    } finally {
      p.stores.keepObjects = false;
      const k = addrKey(address);
      const rec = p.stores.sessions.get(k);
      if (rec instanceof S.SessionRecord) p.stores.sessions.set(k, rec.serialize());
    }
    const out = [];
    for (const pt of c.plaintexts) {
      const ct = await S.signalEncrypt(
        unb64(pt),
        address,
        p.stores.sessionStore,
        p.stores.identityStore,
      );
      out.push({ type: ct.type(), body: b64(ct.serialize()) });
    }
    return { messages: out };
  },

  async decrypt(c) {
    const p = party(c.party);
    const address = toAddress(c.address);
    const out = [];
    for (const msg of c.messages) {
      try {
        out.push({ ok: true, plaintext: b64(await decryptOne(p.stores, address, msg)) });
      } catch (e) {
        out.push({ ok: false, error: describeError(e) });
      }
    }
    return { results: out };
  },

  async has_session(c) {
    const p = party(c.party);
    const raw = p.stores.sessions.get(`${c.address.name}.${c.address.device_id}`);
    if (raw === undefined) return { has_session: false };
    return { has_session: S.SessionRecord.deserialize(raw).hasCurrentState() };
  },

  async sk_create(c) {
    const p = party(c.party);
    const skdm = await S.SenderKeyDistributionMessage.create(
      toAddress(c.sender),
      c.distribution_id,
      p.stores.senderKeyStore,
    );
    return { skdm: b64(skdm.serialize()) };
  },

  async sk_process(c) {
    const p = party(c.party);
    await S.processSenderKeyDistributionMessage(
      toAddress(c.sender),
      S.SenderKeyDistributionMessage.deserialize(unb64(c.skdm)),
      p.stores.senderKeyStore,
    );
    return {};
  },

  async sk_encrypt(c) {
    const p = party(c.party);
    const sender = toAddress(c.sender);
    const empty = new Uint8Array(new ArrayBuffer(0));
    for (let i = 0; i < (c.skip ?? 0); i++) {
      await S.groupEncrypt(sender, c.distribution_id, p.stores.senderKeyStore, empty);
    }
    const out = [];
    for (const pt of c.plaintexts) {
      const ct = await S.groupEncrypt(sender, c.distribution_id, p.stores.senderKeyStore, unb64(pt));
      out.push(b64(ct.serialize()));
    }
    return { messages: out };
  },

  async sk_decrypt(c) {
    const p = party(c.party);
    const sender = toAddress(c.sender);
    const out = [];
    for (const m of c.messages) {
      try {
        const pt = await S.groupDecrypt(sender, p.stores.senderKeyStore, unb64(m));
        out.push({ ok: true, plaintext: b64(pt) });
      } catch (e) {
        out.push({ ok: false, error: describeError(e) });
      }
    }
    return { results: out };
  },

  async sk_record(c) {
    const p = party(c.party);
    const raw = p.stores.senderKeys.get(`${c.sender.name}.${c.sender.device_id}::${c.distribution_id}`);
    return { record: raw === undefined ? null : b64(raw) };
  },

  async sk_set_record(c) {
    const p = party(c.party);
    const key = `${c.sender.name}.${c.sender.device_id}::${c.distribution_id}`;
    p.stores.senderKeys.set(key, S.SenderKeyRecord.deserialize(unb64(c.record)).serialize());
    return {};
  },

  async fingerprint(c) {
    const fp = S.Fingerprint.new(
      c.iterations ?? 5200,
      c.version ?? 2,
      unb64(c.local_id),
      S.PublicKey.deserialize(unb64(c.local_key)),
      unb64(c.remote_id),
      S.PublicKey.deserialize(unb64(c.remote_key)),
    );
    return {
      display: fp.displayableFingerprint().toString(),
      scannable: b64(fp.scannableFingerprint().toBuffer()),
    };
  },

  async fingerprint_compare(c) {
    const mine = S.ScannableFingerprint._fromBuffer(unb64(c.mine));
    const theirs = S.ScannableFingerprint._fromBuffer(unb64(c.theirs));
    return { equal: mine.compare(theirs) };
  },

  async generate_key() {
    const k = S.PrivateKey.generate();
    return { private_key: b64(k.serialize()), public_key: b64(k.getPublicKey().serialize()) };
  },

  async public_key(c) {
    const k = S.PrivateKey.deserialize(unb64(c.private_key));
    return { public_key: b64(k.getPublicKey().serialize()) };
  },

  async sign(c) {
    const k = c.party
      ? party(c.party).stores.identity.privateKey
      : S.PrivateKey.deserialize(unb64(c.private_key));
    return { signatures: c.messages.map((m) => b64(k.sign(unb64(m)))) };
  },

  async verify(c) {
    const k = S.PublicKey.deserialize(unb64(c.public_key));
    return {
      valid: c.items.map((it) => k.verify(unb64(it.message), unb64(it.signature))),
    };
  },

  async agree(c) {
    const k = S.PrivateKey.deserialize(unb64(c.private_key));
    return { shared: b64(k.agree(S.PublicKey.deserialize(unb64(c.public_key)))) };
  },

  async bench_setup(c) {
    return benchSetup(c.n, c.kyber ?? true);
  },

  async bench_session(c) {
    return benchSession(c.n, c.mode ?? 'oneway', c.size ?? 100, c.kyber ?? true, c.keep_objects ?? false);
  },

  async bench_sender_keys(c) {
    return benchSenderKeys(c.n, c.size ?? 100);
  },

  async forget(c) {
    parties.delete(c.party);
    return {};
  },
};

const rl = readline.createInterface({ input: process.stdin, terminal: false });
for await (const line of rl) {
  if (line.trim() === '') continue;
  let id = null;
  let answer;
  try {
    const c = JSON.parse(line);
    id = c.id ?? null;
    const h = handlers[c.cmd];
    if (h === undefined) throw new Error(`unknown command ${c.cmd}`);
    answer = { id, ok: true, result: await h(c) };
  } catch (e) {
    answer = { id, ok: false, error: describeError(e) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
