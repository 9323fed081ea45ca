// The login page: 企业业务 / 代理业务 certificate login through the local agent.
import {
  api,
  connectAgent,
  forgetPairing,
  showError,
  certificateLabel,
  choiceButton,
  explainAgentFailure,
  localNetworkPermission,
} from "/static/pages/common.js";

let kind = "enterprise";
let agent = null;
let attemptId = null;
const $ = (id) => document.getElementById(id);

function show(step) {
  for (const id of ["step-certificate", "step-person", "step-code", "step-client"]) {
    $(id).classList.toggle("hidden", id !== step);
  }
}

async function refreshCertificates() {
  const { tokens, problems } = await agent.listCertificates();
  showMediaProblems(problems ?? []);
  const select = $("certificate");
  const previous = select.value;
  select.innerHTML = "";
  for (const token of tokens) {
    for (const cert of token.certificates) {
      if (!cert.info || !cert.hasPrivateKey) continue;
      const option = document.createElement("option");
      option.value = JSON.stringify({ tokenId: token.tokenId, certId: cert.certId });
      option.textContent = certificateLabel(token, cert);
      option.dataset.pinState = token.pinState;
      option.dataset.pinPad = token.pinPad ? "1" : "";
      option.dataset.notAfter = cert.info.notAfter;
      select.append(option);
    }
  }
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
  if (!select.options.length) {
    const option = document.createElement("option");
    option.textContent = "未检测到证书，请插入税务UKey、金税盘或税控盘";
    option.value = "";
    select.append(option);
  }
  describeSelected();
}

/** A card in a reader with no driver for it: say so, and which driver when the agent knows. */
function showMediaProblems(problems) {
  const missing = problems.filter((p) => p.error?.code === "MEDIUM_DRIVER_MISSING");
  const box = $("media-problem");
  box.classList.toggle("hidden", !missing.length);
  box.textContent = missing
    .map((p) =>
      p.driver
        ? `已检测到证书介质（${p.reader}），但未安装其驱动程序：请安装“${p.driver.name}”。`
        : `已检测到证书介质（${p.reader}），但未安装其驱动程序，请安装介质厂商提供的驱动程序。`,
    )
    .join(" ");
}

function describeSelected() {
  const option = $("certificate").selectedOptions[0];
  const hint = $("certificate-hint");
  const locked = option?.dataset.pinState === "locked";
  const pinPad = Boolean(option?.dataset.pinPad);
  // a locked PIN is not asked for; a reader with a keypad asks for it itself
  $("pin").classList.toggle("hidden", locked || pinPad);
  document.querySelector('label[for="pin"]')?.classList.toggle("hidden", locked || pinPad);
  $("login").disabled = locked;
  if (!option || !option.value) {
    hint.textContent = "";
    return;
  }
  const states = { locked: "证书密码已锁定", final_try: "仅剩最后一次尝试机会", count_low: "近期有错误的密码尝试" };
  const until = new Date(option.dataset.notAfter).toLocaleDateString("zh-CN");
  hint.textContent =
    `有效期至 ${until}` +
    (states[option.dataset.pinState] ? `；${states[option.dataset.pinState]}` : "") +
    (pinPad && !locked ? "；点击登录后，请在读卡器的密码键盘上输入证书密码" : "");
}

async function login() {
  showError("error", null);
  const selected = $("certificate").value;
  const pinPad = Boolean($("certificate").selectedOptions[0]?.dataset.pinPad);
  const pin = $("pin").value;
  if (!selected) return showError("error", { message: "请先插入证书介质并选择证书。" });
  if (!pin && !pinPad) return showError("error", { message: "请输入证书密码。" });
  $("login").disabled = true;
  try {
    const { nonce } = await api("/api/challenge", {});
    const { tokenId, certId } = JSON.parse(selected);
    const request = pinPad ? { tokenId, certId, challengeNonce: nonce } : { tokenId, certId, pin, challengeNonce: nonce };
    const { authToken, initialPin } = await agent.authenticate(request);
    const mustChange = initialPin || $("certificate").selectedOptions[0]?.dataset.pinState === "to_be_changed";
    $("initial-pin").classList.toggle("hidden", !mustChange);
    if (mustChange) sessionStorage.setItem("initialPin", "1");
    const step = await api("/api/login/certificate", { kind, authToken, nonce });
    attemptId = step.attemptId;
    $("enterprise-name").textContent = step.enterprise.name;
    $("persons").replaceChildren(
      ...step.persons.map((person) =>
        choiceButton(person.name, `${person.roles.join("、")}　${person.phone}`, { personId: person.personId }, () =>
          sendCode(person.personId),
        ),
      ),
    );
    show("step-person");
  } catch (error) {
    showError("error", error);
  } finally {
    $("pin").value = ""; // the PIN is typed again for every attempt, never kept in the page
    $("login").disabled = false;
  }
}

let chosenPerson = null;
let countdown = null;

/** The resend button counts down the seconds the verifier asks to wait (resendIn / retryAfter). */
function waitToResend(seconds) {
  clearInterval(countdown);
  const button = $("resend");
  let left = Math.max(0, Math.ceil(seconds));
  const tick = () => {
    button.disabled = left > 0;
    button.textContent = left > 0 ? `重新发送验证码（${left} 秒）` : "重新发送验证码";
    if (left-- <= 0) clearInterval(countdown);
  };
  tick();
  countdown = setInterval(tick, 1000);
}

let personWait = null;

/** On the person step, a send refused for now (the waits are per person and per number, so a
 * person logging in again soon meets them): count the seconds down in the message, the persons'
 * buttons held, and say when a code may be asked for again. */
function waitAtPersons(seconds) {
  clearInterval(personWait);
  const buttons = [...document.querySelectorAll("#persons button")];
  let left = Math.max(1, Math.ceil(seconds));
  const tick = () => {
    for (const button of buttons) button.disabled = left > 0;
    if (left > 0) showError("error", { message: `验证码发送过于频繁，请 ${left} 秒后再试` });
    else {
      showError("error", { message: "现在可以重新获取验证码，请再次选择办税人员" });
      clearInterval(personWait);
    }
    left--;
  };
  tick();
  personWait = setInterval(tick, 1000);
}

async function sendCode(personId) {
  showError("error", null);
  chosenPerson = personId;
  const atPersons = !$("step-person").classList.contains("hidden");
  try {
    const { sentTo, resendIn } = await api("/api/login/sms", { attemptId, personId });
    clearInterval(personWait);
    $("sent-to").textContent = sentTo;
    show("step-code");
    waitToResend(resendIn);
  } catch (error) {
    showError("error", error);
    if (error.code === "SMS_RATE_LIMITED") {
      if (atPersons) waitAtPersons(error.details.retryAfter);
      else waitToResend(error.details.retryAfter);
    }
  }
}

async function verify() {
  showError("error", null);
  $("verify").disabled = true;
  try {
    const result = await api("/api/login/verify", { attemptId, code: $("code").value.trim() });
    if (result.clients) {
      $("clients").replaceChildren(
        ...result.clients.map((client) =>
          choiceButton(client.name, client.taxpayerId, { clientId: client.taxpayerId }, () =>
            chooseClient(client.taxpayerId),
          ),
        ),
      );
      show("step-client");
    } else {
      location.href = "/home";
    }
  } catch (error) {
    showError("error", error);
  } finally {
    $("verify").disabled = false;
  }
}

async function chooseClient(clientId) {
  showError("error", null);
  try {
    await api("/api/login/client", { attemptId, clientId });
    location.href = "/home";
  } catch (error) {
    showError("error", error);
  }
}

function selectTab(button) {
  kind = button.dataset.kind;
  for (const tab of document.querySelectorAll(".tabs button")) tab.classList.toggle("active", tab === button);
  show("step-certificate");
  showError("error", null);
}

async function start() {
  for (const tab of document.querySelectorAll(".tabs button")) tab.addEventListener("click", () => selectTab(tab));
  $("login").addEventListener("click", login);
  $("resend").addEventListener("click", () => sendCode(chosenPerson));
  $("pin").addEventListener("keydown", (e) => e.key === "Enter" && login());
  $("verify").addEventListener("click", verify);
  $("certificate").addEventListener("change", describeSelected);
  // A tax bureau page is public https: there, connecting makes the browser ask the user for the
  // Local Network Access permission, so it waits for their click. (An http page can only be a
  // loopback development page, which the browser never asks about.)
  if (location.protocol === "https:" && (await localNetworkPermission()) === "prompt") {
    $("allow-agent").classList.remove("hidden");
    document.body.dataset.ready = "ask-permission";
    await new Promise((resolve) => $("allow-agent-button").addEventListener("click", resolve, { once: true }));
    $("allow-agent").classList.add("hidden");
  }
  try {
    agent = await connectAgent();
  } catch (error) {
    await explainAgentFailure($("agent-missing"), error);
    if (error.code === "AGENT_IMPOSTOR") {
      $("pin").disabled = true; // nothing typed here can reach the impostor
      $("repair-agent").classList.remove("hidden");
      $("repair-agent").addEventListener("click", () => {
        forgetPairing();
        location.reload();
      });
    }
    $("login").disabled = true;
    document.body.dataset.ready = "agent-missing";
    return;
  }
  agent.on("tokenInserted", refreshCertificates);
  agent.on("tokenRemoved", refreshCertificates);
  agent.on("tokenChanged", refreshCertificates);
  agent.on("cardInserted", refreshCertificates);
  agent.on("cardRemoved", refreshCertificates);
  agent.on("mediumWithoutDriver", refreshCertificates);
  await refreshCertificates();
  document.body.dataset.ready = "yes";
}

start();
