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

export const DEFAULT_PORT = 27138;
export const PROTOCOL_VERSION = 1;

/** Messages for the failures that happen in the browser, before the agent can answer. */
export const CLIENT_ERRORS = Object.freeze({
  AGENT_NOT_RUNNING: "未检测到证书助手。请确认已安装并启动证书助手（cert-agent），然后刷新页面。",
  LOCAL_NETWORK_DENIED:
    "浏览器阻止了本页访问本机的证书助手。请点击地址栏左侧的图标，打开“网站设置”，将“本地网络访问”改为“允许”，然后刷新页面。",
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
 * @property {number} [port]              the agent's port (default 27138)
 * @property {number} [timeoutMs]         how long to wait for the connection (default 5000)
 * @property {number} [requestTimeoutMs]  how long to wait for one answer (default 120000: a PIN pad can be slow)
 */

/**
 * Connect to the local agent.
 * @param {ConnectOptions} [options]
 * @returns {Promise<AgentConnection>}
 */
export async function connect(options = {}) {
  const port = options.port ?? DEFAULT_PORT;
  const timeoutMs = options.timeoutMs ?? 5000;
  if ((await localNetworkPermission()) === "denied") {
    throw clientError("LOCAL_NETWORK_DENIED");
  }
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.close();
      reject(clientError("TIMEOUT"));
    }, timeoutMs);
    ws.addEventListener("open", () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    ws.addEventListener("close", async () => {
      clearTimeout(timer);
      const denied = (await localNetworkPermission()) === "denied";
      reject(clientError(denied ? "LOCAL_NETWORK_DENIED" : "AGENT_NOT_RUNNING"));
    });
  });
  const connection = new AgentConnection(ws, options.requestTimeoutMs ?? 120000);
  await connection.hello();
  return connection;
}

/**
 * Whether this page may reach the agent on the loopback address: Chrome's Local Network Access
 * permission ("loopback-network" since Chrome 145, "local-network-access" before), "granted",
 * "prompt" or "denied"; "unknown" in browsers without it. Pages ask before they connect: when it
 * is "prompt", connecting makes the browser ask the user, so do it on the user's action.
 * @returns {Promise<string>}
 */
export async function localNetworkPermission() {
  for (const name of ["loopback-network", "local-network-access"]) {
    try {
      const status = await navigator.permissions.query({ name: /** @type {any} */ (name) });
      return status.state;
    } catch {
      // this browser does not know the name: try the older one
    }
  }
  return "unknown";
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
