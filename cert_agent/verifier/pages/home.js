// The logged-in home page: who is logged in, for which enterprise, and logout.
import { api, showError, fillDetails } from "/static/pages/common.js";
const $ = (id) => document.getElementById(id);
try {
  const me = await api("/api/session");
  $("welcome").textContent = `欢迎，${me.person.name}`;
  const rows = [["办税人员", me.person.name], ["当前企业", me.enterprise.name], ["纳税人识别号", me.enterprise.taxpayerId]];
  if (me.agency) rows.push(["代理机构", me.agency.name]);
  fillDetails($("who"), rows);
  $("initial-pin").classList.toggle("hidden", !sessionStorage.getItem("initialPin"));
  document.body.dataset.ready = "yes";
} catch (error) {
  location.href = "/";
}
$("logout").addEventListener("click", async () => {
  try { await api("/api/logout", {}); } catch (error) { showError("error", error); }
  location.href = "/";
});
