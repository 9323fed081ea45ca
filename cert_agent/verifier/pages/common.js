// Shared by the verifier's pages: the agent connection, the API, and error texts.
import {
  connect,
  forgetPairing,
  CertAgentError,
  localNetworkPermission,
  localNetworkPermissionStatus,
} from "/static/cert-agent.js";

export { forgetPairing, localNetworkPermission };

/**
 * The agent's ports: ?agentPort=P or ?agentPorts=P,Q on a visit (development and tests),
 * remembered for the tab; else cert-agent.js's own range.
 */
export function agentPorts() {
  const query = new URLSearchParams(location.search);
  const fromQuery = query.get("agentPorts") ?? query.get("agentPort");
  if (fromQuery) sessionStorage.setItem("agentPorts", fromQuery);
  const ports = (sessionStorage.getItem("agentPorts") ?? "").split(",").map(Number);
  return ports.every((port) => Number.isInteger(port) && port > 0 && port < 65536) ? ports : undefined;
}

export async function connectAgent() {
  return connect({ ports: agentPorts(), timeoutMs: 4000 });
}

/** POST JSON to the verifier; an error answer becomes a CertAgentError with its code and message. */
export async function api(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json();
  if (!response.ok) {
    const { code, message, ...details } = data.error;
    throw new CertAgentError(code, message, details);
  }
  return data;
}

/** POST `body` to `path`, then go to the logged-in page; a refusal is shown in element `errorId`. */
export async function postThenHome(path, body, errorId = "error") {
  showError(errorId, null);
  try {
    await api(path, body);
    location.href = "/home";
  } catch (error) {
    showError(errorId, error);
  }
}

/** Show an error (or clear it with null) in element `id`. */
export function showError(id, error) {
  const box = document.getElementById(id);
  if (!error) {
    box.classList.add("hidden");
    return;
  }
  // The agent's and the verifier's errors, and the page's own words ({message}), are shown as they
  // are; anything else (a bug, a network failure) in general words.
  const ours = error instanceof CertAgentError || (!(error instanceof Error) && typeof error.message === "string");
  box.textContent = ours ? error.message : "操作失败，请稍后重试。";
  box.dataset.code = error.code ?? (ours ? "PAGE" : "UNEXPECTED");
  box.classList.remove("hidden");
}

export const AGENT_HELP = `
  <p>未检测到证书助手（cert-agent）。证书登录需要在本机安装并启动证书助手：</p>
  <ol class="steps">
    <li>安装：在项目目录运行 <code>bash scripts/setup.sh</code>，或安装管理员提供的安装包；</li>
    <li>启动：运行 <code>cert-agent serve</code>，并保持其运行；</li>
    <li>插入税务UKey、金税盘或税控盘后，刷新本页面。</li>
  </ol>`;

/**
 * Explain in `box` why the agent could not be reached. While the browser's Local Network Access
 * prompt is open (Firefox holds the connection until the user answers), say so and reload the
 * page once the user has answered it.
 * @param {HTMLElement} box  @param {CertAgentError} error
 */
export async function explainAgentFailure(box, error) {
  const explained = ["LOCAL_NETWORK_DENIED", "LOCAL_NETWORK_PROMPT", "AGENT_IMPOSTOR"];
  if (explained.includes(error.code)) box.textContent = error.message;
  else box.innerHTML = AGENT_HELP; // static text of this page
  box.dataset.code = error.code ?? "UNEXPECTED";
  box.classList.remove("hidden");
  if (error.code === "LOCAL_NETWORK_PROMPT") {
    const status = await localNetworkPermissionStatus();
    status?.addEventListener("change", () => location.reload(), { once: true });
  }
}

export function certificateLabel(token, cert) {
  const info = cert.info;
  const name = info.subjectCN ?? info.subject;
  const sm2 = info.algorithm === "SM2SM3" ? " · 国密" : "";  // an SM2 certificate says so
  return `[${token.medium}${sm2}] ${name}（${info.taxpayerId ?? "无纳税人识别号"}）`;
}

/**
 * A choice button (a person, a client enterprise). Text goes in as text, never as HTML: names
 * come from the database and from certificates, which a page must not trust as markup.
 * @param {string} main  @param {string} detail  @param {Record<string, string>} data  @param {() => void} onClick
 */
export function choiceButton(main, detail, data, onClick) {
  const button = document.createElement("button");
  button.className = "choice";
  Object.assign(button.dataset, data);
  const small = document.createElement("small");
  small.textContent = detail;
  button.append(main, small);
  button.addEventListener("click", onClick);
  return button;
}

/** Fill a <dl> with [term, value] rows, as text. */
export function fillDetails(dl, rows) {
  dl.replaceChildren();
  for (const [term, value] of rows) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = value;
    dl.append(dt, dd);
  }
}
