// The logged-in home page: who is logged in, for which enterprise, in which role and identity;
// 【切换主管税务机关】 from the greeting (特定主体, FAQ item 12), and logout.
import { api, showError, fillDetails, choiceButton } from "/static/pages/common.js";
const $ = (id) => document.getElementById(id);

function show(me) {
  const acting = me.identity ? me.identity.name : me.enterprise.name;
  $("welcome").textContent = `欢迎，${me.person.name}`;
  $("greeting").textContent = `欢迎，${acting}${me.role ? `（${me.role}）` : ""}`;
  const rows = [["办税人员", me.person.name], ["当前企业", me.enterprise.name], ["纳税人识别号", me.enterprise.taxpayerId]];
  if (me.role) rows.push(["当前身份", me.role]);
  if (me.identity) rows.push(["特定主体", `${me.identity.kind}：${me.identity.name}`]);
  if (me.taxAuthority) rows.push(["主管税务机关", me.taxAuthority]);
  if (me.agency) rows.push(["代理机构", me.agency.name]);
  fillDetails($("who"), rows);
  $("switch-authority").classList.toggle("hidden", !me.identities.length);
  $("authority-list").replaceChildren(
    ...me.identities.map((identity) => {
      const current = (me.identity?.identityId ?? "") === identity.identityId;
      const button = choiceButton(
        `${identity.kind}：${identity.name}`,
        `${identity.taxAuthority}${current ? "（当前）" : ""}`,
        { identityId: identity.identityId },
        () => switchAuthority(identity.identityId),
      );
      button.disabled = current;
      return button;
    }),
  );
}

async function switchAuthority(identityId) {
  showError("error", null);
  try {
    show(await api("/api/session/identity", { identityId }));
    $("authorities").classList.add("hidden");
    document.body.dataset.switched = identityId || "own";
  } catch (error) {
    showError("error", error);
  }
}

try {
  show(await api("/api/session"));
  $("initial-pin").classList.toggle("hidden", !sessionStorage.getItem("initialPin"));
  document.body.dataset.ready = "yes";
} catch (error) {
  location.href = "/";
}
$("switch-authority").addEventListener("click", () => $("authorities").classList.toggle("hidden"));
$("logout").addEventListener("click", async () => {
  try {
    await api("/api/logout", {});
  } catch (error) {
    showError("error", error);
  }
  location.href = "/";
});
