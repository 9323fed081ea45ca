// cert-agent.js — the browser side of cert-agent (证书助手), for relying-party pages.
//
// An ES module with no build step and no dependencies:
//
//   import { connect } from "/static/cert-agent.js";
//   const agent = await connect();                       // ws://127.0.0.1:27138/ws
//   const { tokens } = await agent.listCertificates();
//   const { authToken } = await agent.authenticate({ tokenId, certId, pin, challengeNonce });
//   agent.on("tokenRemoved", ({ tokenId }) => ...);
//
// Every failure is a CertAgentError with a stable `code` (see docs/protocol.md) and a
// Simplified Chinese `message` a taxpayer can act on. The PIN is sent to the agent and
// nowhere else; this module keeps no copy of it.

/**
 * The ports an agent may listen on, tried in this order. On a terminal server each user's agent
 * holds the first one free of the range; the others' agents refuse this page at the handshake.
 * Keep in step with DEFAULT_PORT and DEFAULT_PORT_RANGE in cert_agent/agent/config.py.
 */
export const DEFAULT_PORTS = Object.freeze([27138, 27139, 27140, 27141, 27142, 27143, 27144, 27145]);
export const DEFAULT_PORT = DEFAULT_PORTS[0];
export const PROTOCOL_VERSION = 1;
const PAIRING_STORAGE_KEY = "cert-agent.pairingKey";

/** Messages for the failures that happen in the browser, before the agent can answer. */
export const CLIENT_ERRORS = Object.freeze({
  AGENT_NOT_RUNNING: "未检测到证书助手。请确认已安装并启动证书助手（cert-agent），然后刷新页面。",
  LOCAL_NETWORK_DENIED:
    "浏览器阻止了本页访问本机的证书助手。请点击地址栏左侧的图标，打开“网站设置”，将“本地网络访问”改为“允许”，然后刷新页面。",
  LOCAL_NETWORK_PROMPT:
    "浏览器正在询问是否允许本页访问本机的设备（本地网络访问）。请在地址栏下方弹出的提示中点击“允许”，本页随后自动连接证书助手。",
  AGENT_IMPOSTOR:
    "检测到本机有其他程序冒充证书助手。为保护您的证书密码，本页不会连接它，请不要在本页输入证书密码，并请管理员检查本机运行的程序。只有在您刚刚重新安装证书助手时，才可点击“重新配对”。",
  TIMEOUT: "证书助手响应超时，请重试。",
  CONNECTION_CLOSED: "与证书助手的连接已断开，请刷新页面。",
});

/**
 * @typedef {Object} ErrorDetails
 * @property {string} [messageEn]
 * @property {number} [triesLeft]   with PIN_INCORRECT, when the medium tells it
 * @property {number} [retryAfter]  with RATE_LIMITED, seconds
 * @property {string} [field]       with BAD_REQUEST
 * @property {string} [rule]        with PIN_POLICY
 */

export class CertAgentError extends Error {
  /**
   * @param {string} code stable error code
   * @param {string} message Simplified Chinese text for the taxpayer
   * @param {ErrorDetails} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = "CertAgentError";
    /** @type {string} */
    this.code = code;
    /** @type {ErrorDetails} */
    this.details = details;
  }
}

/**
 * @typedef {Object} ConnectOptions
 * @property {number[]} [ports]           the ports to try, in order (default DEFAULT_PORTS)
 * @property {number} [port]              one port only (development, tests)
 * @property {number} [timeoutMs]         how long to wait for an agent's answer (default 5000)
 * @property {number} [requestTimeoutMs]  how long to wait for one answer (default 120000: a PIN pad can be slow)
 */

/**
 * Connect to this user's agent, and to nothing else that listens on its ports.
 *
 * Every port is tried at once. A page that has paired before (see `forgetPairing`) sends each
 * answering agent a fresh challenge and takes the first port, in order, whose answer proves it
 * knows this origin's pairing key; an answer that does not is an impostor (another user's
 * program) and is sent nothing more. A page that has not paired takes the agent only when
 * exactly one answers, and pairs with it; two answers mean one is an impostor.
 * Throws CertAgentError AGENT_IMPOSTOR when only impostors answered; LOCAL_NETWORK_PROMPT when no
 * agent answered while the browser's Local Network Access prompt is still open (Firefox holds the
 * connection until the user answers: connect again when `localNetworkPermissionStatus()` changes).
 * @param {ConnectOptions} [options]
 * @returns {Promise<AgentConnection>}
 */
export async function connect(options = {}) {
  const ports = options.ports ?? (options.port ? [options.port] : DEFAULT_PORTS);
  const timeoutMs = options.timeoutMs ?? 5000;
  const requestTimeoutMs = options.requestTimeoutMs ?? 120000;
  if ((await localNetworkPermission()) === "denied") {
    throw clientError("LOCAL_NETWORK_DENIED");
  }
  const key = storedPairingKey();
  const canVerify = Boolean(globalThis.crypto?.subtle);
  const answers = await Promise.all(ports.map((port) => reach(port, timeoutMs, requestTimeoutMs)));
  const reached = /** @type {Reached[]} */ (answers.filter((answer) => "connection" in answer));
  /** @param {AgentConnection | null} keep */
  const closeAllBut = (keep) => reached.forEach((a) => a.connection !== keep && a.connection.close());
  if (key && canVerify) {
    const impostors = [];
    for (const answer of reached) {
      if (await proves(key, answer.challenge, answer.hello.pairingProof)) {
        closeAllBut(answer.connection);
        answer.connection.impostorPorts = impostors;
        return answer.connection;
      }
      impostors.push(answer.port);
    }
    closeAllBut(null);
    if (impostors.length) throw clientError("AGENT_IMPOSTOR");
  } else if (reached.length === 1) {
    const { connection } = reached[0];
    const { pairingKey } = await connection._call("pair", {});
    storePairingKey(pairingKey);
    return connection;
  } else if (reached.length > 1) {
    closeAllBut(null);
    throw clientError("AGENT_IMPOSTOR");
  }
  const failures = answers.map((answer) => ("error" in answer ? answer.error : null));
  const fromAgent = failures.find((error) => error && !(error.code in CLIENT_ERRORS));
  if (fromAgent) throw fromAgent; // an agent answered, but refused (UNSUPPORTED_PROTOCOL ...)
  const permission = await localNetworkPermission();
  if (permission === "denied") throw clientError("LOCAL_NETWORK_DENIED");
  const timedOut = failures.some((error) => error?.code === "TIMEOUT");
  // The browser holds the connection while its Local Network Access prompt waits for the user
  // (measured in Firefox): on an https page (the only kind the browsers ask about), no answer while
  // the permission is still to be asked is that prompt, not a slow agent.
  if (timedOut && permission === "prompt" && location.protocol === "https:") throw clientError("LOCAL_NETWORK_PROMPT");
  throw clientError(timedOut ? "TIMEOUT" : "AGENT_NOT_RUNNING");
}

/**
 * @typedef {{port: number, connection: AgentConnection, challenge: Uint8Array, hello: any}} Reached
 * @typedef {{port: number, error: CertAgentError}} Unreached
 */

/**
 * Forget this page's pairing with the agent (the user's own action, e.g. after reinstalling
 * the agent): the next `connect` pairs again with the one agent that answers.
 */
export function forgetPairing() {
  try {
    localStorage.removeItem(PAIRING_STORAGE_KEY);
  } catch {
    // no storage: nothing was kept
  }
}

/** @returns {string | null} */
function storedPairingKey() {
  try {
    return localStorage.getItem(PAIRING_STORAGE_KEY);
  } catch {
    return null; // storage blocked: the page behaves as unpaired, every time
  }
}

/** @param {string} key */
function storePairingKey(key) {
  try {
    localStorage.setItem(PAIRING_STORAGE_KEY, key);
  } catch {
    // storage blocked: the next connection pairs again
  }
}

/**
 * Open the WebSocket on `port` and say hello with a fresh pairing challenge; the error when
 * nothing usable answers there (closed port, another user's agent refusing us, no answer in time).
 * @param {number} port @param {number} timeoutMs @param {number} requestTimeoutMs
 * @returns {Promise<Reached | Unreached>}
 */
async function reach(port, timeoutMs, requestTimeoutMs) {
  let ws;
  try {
    ws = await openSocket(`ws://127.0.0.1:${port}/ws`, timeoutMs);
  } catch (error) {
    return { port, error: /** @type {CertAgentError} */ (error) };
  }
  const connection = new AgentConnection(ws, Math.min(timeoutMs, requestTimeoutMs));
  const challenge = crypto.getRandomValues(new Uint8Array(32));
  try {
    const hello = await connection._call("hello", {
      protocolVersions: [PROTOCOL_VERSION],
      pairingChallenge: toBase64(challenge),
    });
    connection._requestTimeoutMs = requestTimeoutMs;
    return { port, connection, challenge, hello };
  } catch (error) {
    connection.close();
    return { port, error: /** @type {CertAgentError} */ (error) };
  }
}

/** @param {string} url @param {number} timeoutMs @returns {Promise<WebSocket>} */
function openSocket(url, timeoutMs) {
  const ws = new WebSocket(url);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.close();
      reject(clientError("TIMEOUT"));
    }, timeoutMs);
    ws.addEventListener("open", () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.addEventListener("close", () => {
      clearTimeout(timer);
      reject(clientError("AGENT_NOT_RUNNING"));
    });
  });
}

/**
 * Whether `proof` is HMAC-SHA256(key, "cert-agent-pairing-v1\n" + origin + "\n" + challenge)
 * for this page's origin (docs/protocol.md, "Pairing").
 * @param {string} key base64 @param {Uint8Array} challenge @param {unknown} proof base64
 */
async function proves(key, challenge, proof) {
  if (typeof proof !== "string") return false;
  try {
    const hmacKey = await crypto.subtle.importKey("raw", fromBase64(key), { name: "HMAC", hash: "SHA-256" }, false, [
      "verify",
    ]);
    const label = new TextEncoder().encode(`cert-agent-pairing-v1\n${location.origin}\n`);
    const data = new Uint8Array(label.length + challenge.length);
    data.set(label);
    data.set(challenge, label.length);
    return await crypto.subtle.verify("HMAC", hmacKey, fromBase64(proof), data);
  } catch {
    return false;
  }
}

/** @param {Uint8Array} bytes */
function toBase64(bytes) {
  return btoa(String.fromCharCode(...bytes));
}

/** @param {string} text */
function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/**
 * Whether this page may reach the agent on the loopback address: the browser's Local Network Access
 * permission ("loopback-network" since Chrome 145 and in Firefox, "local-network-access" in older
 * Chrome), "granted",
 * "prompt" or "denied"; "unknown" in browsers without it. Pages ask before they connect: when it
 * is "prompt", connecting makes the browser ask the user, so do it on the user's action.
 * @returns {Promise<string>}
 */
export async function localNetworkPermission() {
  return (await localNetworkPermissionStatus())?.state ?? "unknown";
}

/**
 * The browser's PermissionStatus for reaching the agent (its `change` event fires when the user
 * answers the browser's prompt), or null in browsers without Local Network Access.
 * @returns {Promise<PermissionStatus | null>}
 */
export async function localNetworkPermissionStatus() {
  for (const name of ["loopback-network", "local-network-access"]) {
    try {
      return await navigator.permissions.query({ name: /** @type {any} */ (name) });
    } catch {
      // this browser does not know the name: try the older one
    }
  }
  return null;
}

/** @param {keyof typeof CLIENT_ERRORS} code */
function clientError(code) {
  return new CertAgentError(code, CLIENT_ERRORS[code]);
}

/**
 * @typedef {Object} Certificate
 * @property {string} tokenId
 * @property {string} certId
 * @property {string} certificate  base64 DER
 * @property {boolean} hasPrivateKey
 * @property {Object|null} info    subject, issuer, validity, taxpayerId ... (null when unparsable)
 * @property {Object|null} error   why it could not be parsed
 *
 * @typedef {Object} Token
 * @property {string} tokenId
 * @property {string} label
 * @property {string} serial
 * @property {string} medium       税务UKey, 金税盘, 税控盘 or 其他介质
 * @property {string} pinState     ok, count_low, final_try, locked, to_be_changed, not_initialized
 * @property {Certificate[]} certificates
 *
 * @typedef {Object} AuthToken    the Web eID authentication token (format web-eid:1.0)
 * @property {string} unverifiedCertificate
 * @property {string} algorithm
 * @property {string} signature
 * @property {string} format
 * @property {string} appVersion
 */

export class AgentConnection {
  /**
   * @param {WebSocket} ws
   * @param {number} requestTimeoutMs
   */
  constructor(ws, requestTimeoutMs) {
    this._ws = ws;
    this._requestTimeoutMs = requestTimeoutMs;
    this._nextId = 1;
    /** @type {Map<number, {resolve: Function, reject: Function, timer: any}>} */
    this._pending = new Map();
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {number[]} ports where an impostor answered before this agent (shown as a warning) */
    this.impostorPorts = [];
    ws.addEventListener("message", (event) => this._receive(event.data));
    ws.addEventListener("close", () => {
      for (const { reject, timer } of this._pending.values()) {
        clearTimeout(timer);
        reject(clientError("CONNECTION_CLOSED"));
      }
      this._pending.clear();
      this._dispatch("close", {});
    });
  }

  /** @returns {Promise<{agent: string, version: string, protocolVersion: number, origin: string}>} */
  hello() {
    return this._call("hello", { protocolVersions: [PROTOCOL_VERSION] });
  }

  /** @returns {Promise<{tokens: Token[]}>} */
  listCertificates() {
    return this._call("listCertificates", {});
  }

  /**
   * Verify the PIN, sign the challenge for this page's origin, log out.
   * @param {{tokenId: string, certId: string, pin?: string, challengeNonce: string, algorithm?: string}} params
   *   `pin` is left out for a token with `pinPad: true`: the reader's keypad asks for it.
   * @returns {Promise<{authToken: AuthToken}>}
   */
  authenticate(params) {
    return this._call("authenticate", params);
  }

  /**
   * @param {{tokenId: string, pin?: string}} params  (no `pin` for a `pinPad` token)
   * @returns {Promise<{verified: true}>}
   */
  verifyPin(params) {
    return this._call("verifyPin", params);
  }

  /**
   * @param {{tokenId: string, oldPin: string, newPin: string}} params
   * @returns {Promise<{changed: true}>}
   */
  changePin(params) {
    return this._call("changePin", params);
  }

  /**
   * Subscribe to "tokenInserted", "tokenRemoved", "tokenChanged" or "close".
   * @param {string} event
   * @param {(data: any) => void} callback
   * @returns {() => void} unsubscribe
   */
  on(event, callback) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event)?.add(callback);
    return () => this._listeners.get(event)?.delete(callback);
  }

  close() {
    this._ws.close();
  }

  /**
   * @param {string} method
   * @param {Object} params
   * @returns {Promise<any>}
   */
  _call(method, params) {
    if (this._ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(clientError("CONNECTION_CLOSED"));
    }
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(clientError("TIMEOUT"));
      }, this._requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      this._ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** @param {string} text */
  _receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.event) {
      this._dispatch(message.event, message.data);
      return;
    }
    const pending = this._pending.get(message.id);
    if (!pending) return;
    this._pending.delete(message.id);
    clearTimeout(pending.timer);
    if (message.error) {
      const { code, message: text, ...details } = message.error;
      pending.reject(new CertAgentError(code, text, details));
    } else {
      pending.resolve(message.result);
    }
  }

  /**
   * @param {string} event
   * @param {any} data
   */
  _dispatch(event, data) {
    for (const callback of this._listeners.get(event) ?? []) {
      try {
        callback(data);
      } catch (error) {
        console.error(error);
      }
    }
  }
}
