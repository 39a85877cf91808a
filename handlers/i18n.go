package handlers

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// The languages of the pages: English and Simplified Chinese.
const (
	langEN = "en"
	langZH = "zh"
)

// langCookie keeps the language a user chose with the switch in the layout.
const langCookie = "ferry_lang"

// statusWords are the job and host statuses the pages show, in the order scripts may need them.
var statusWords = []string{
	"pending", "running", "success", "failed", "timeout", "canceled", "duplicate",
	"queued", "waiting", "succeeded", "skipped",
	"awaiting_approval", "scheduled", "rejected",
	"paused",
}

// registerLanguage registers the language switch: GET /lang/zh?next=/projects/orders.
func (s *Server) registerLanguage(r gin.IRouter) {
	r.GET("/lang/:lang", s.need(public), s.switchLanguage)
}

// switchLanguage remembers the chosen language for a year and goes back to the page.
func (s *Server) switchLanguage(c *gin.Context) {
	lang := c.Param("lang")
	if lang != langEN && lang != langZH {
		lang = langEN
	}
	s.setCookie(c, langCookie, lang, 365*24*3600)
	c.Redirect(http.StatusSeeOther, safeNext(c.Query("next")))
}

// pickLang returns the language of a request: the switch's cookie, else the first language of
// Accept-Language that ferry speaks, else English.
func pickLang(c *gin.Context) string {
	if v, err := c.Cookie(langCookie); err == nil && (v == langEN || v == langZH) {
		return v
	}
	return langFromAccept(c.GetHeader("Accept-Language"))
}

// langFromAccept picks en or zh from an Accept-Language header by quality.
func langFromAccept(header string) string {
	type choice struct {
		lang string
		q    float64
		pos  int
	}
	var choices []choice
	for i, part := range strings.Split(header, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		primary, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if (primary == langEN || primary == langZH) && q > 0 {
			choices = append(choices, choice{primary, q, i})
		}
	}
	sort.SliceStable(choices, func(i, j int) bool { return choices[i].q > choices[j].q })
	if len(choices) == 0 {
		return langEN
	}
	return choices[0].lang
}

// hasMessage reports whether key is in the table.
func hasMessage(key string) bool {
	_, ok := messages[key]
	return ok
}

// translate returns key's text in lang, formatted with args. A key missing from the table
// shows as itself in brackets, so that a mistake is visible rather than blank.
func translate(lang, key string, args ...any) string {
	m, ok := messages[key]
	if !ok {
		return "[" + key + "]"
	}
	text := m[0]
	if lang == langZH {
		text = m[1]
	}
	if len(args) > 0 {
		return fmt.Sprintf(text, args...)
	}
	return text
}

// MessageKeys returns every key of the translation table, sorted; tests use it with Message.
func MessageKeys() []string {
	keys := make([]string, 0, len(messages))
	for k := range messages {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Message returns the English and Chinese texts of key, "" for a missing key or language.
func Message(key string) (en, zh string) {
	m := messages[key]
	return m[0], m[1]
}

// messages is the translation table: key → {English, Simplified Chinese}. Every string a page
// shows goes through it (see page.T); TestEveryMessageHasBothLanguages checks both are there.
var messages = map[string][2]string{
	// layout and navigation
	"nav.dashboard": {"Projects", "项目"},
	"nav.hosts":     {"Hosts", "主机"},
	"nav.tokens":    {"API tokens", "API 令牌"},
	"nav.users":     {"Users", "用户"},
	"nav.audit":     {"Audit log", "审计日志"},
	"nav.logout":    {"Log out", "退出登录"},
	"lang.switch":   {"中文", "English"},
	"user.admin":    {"admin", "管理员"},
	"error.back":    {"Back to the projects", "返回项目列表"},
	"word.yes":      {"yes", "是"},
	"word.no":       {"no", "否"},

	// actions
	"action.add":    {"Add", "添加"},
	"action.back":   {"Back", "返回"},
	"action.cancel": {"Cancel", "取消"},
	"action.copy":   {"Copy", "复制"},
	"action.create": {"Create", "创建"},
	"action.done":   {"Done", "完成"},
	"action.remove": {"Remove", "删除"},
	"action.show":   {"Show", "显示"},

	// words the scripts use
	"js.failed":       {"Failed", "失败"},
	"js.confirm":      {"Are you sure?", "确定吗？"},
	"js.copied":       {"Copied", "已复制"},
	"js.reconnecting": {"Connection lost; reconnecting…", "连接已断开，正在重连…"},

	// login
	"login.title":    {"Log in", "登录"},
	"login.heading":  {"Log in to ferry", "登录 ferry"},
	"login.name":     {"User name", "用户名"},
	"login.password": {"Password", "密码"},
	"login.submit":   {"Log in", "登录"},

	// table columns
	"col.author":       {"Author", "作者"},
	"col.branches":     {"Branches", "分支"},
	"col.build":        {"Build", "构建"},
	"col.commit":       {"Commit", "提交"},
	"col.created":      {"Created", "创建时间"},
	"col.decision":     {"Outcome", "结果"},
	"col.deployment":   {"Deployment", "部署"},
	"col.duration":     {"Duration", "耗时"},
	"col.environment":  {"Environment", "环境"},
	"col.error":        {"Error", "错误"},
	"col.gitlab_path":  {"GitLab path", "GitLab 路径"},
	"col.host":         {"Host", "主机"},
	"col.kind":         {"Kind", "类型"},
	"col.message":      {"Message", "提交说明"},
	"col.name":         {"Name", "名称"},
	"col.progress":     {"Upload", "上传进度"},
	"col.project":      {"Project", "项目"},
	"col.queued":       {"Queued", "排队时间"},
	"col.received":     {"Received", "接收时间"},
	"col.size":         {"Size", "大小"},
	"col.started":      {"Started", "开始时间"},
	"col.status":       {"Status", "状态"},
	"col.step":         {"Step", "步骤"},
	"col.strategy":     {"Strategy", "发布策略"},
	"col.triggered_by": {"Triggered by", "触发者"},
	"col.user":         {"User", "用户"},
	"col.version":      {"Version", "版本"},

	// statuses
	"status.pending":   {"pending", "等待中"},
	"status.running":   {"running", "运行中"},
	"status.success":   {"success", "成功"},
	"status.failed":    {"failed", "失败"},
	"status.timeout":   {"timed out", "超时"},
	"status.canceled":  {"canceled", "已取消"},
	"status.duplicate": {"duplicate", "重复"},
	"status.queued":    {"queued", "排队中"},
	"status.waiting":   {"waiting", "等待中"},
	"status.succeeded": {"succeeded", "成功"},
	"status.skipped":   {"skipped", "已跳过"},

	// dashboard
	"dash.title":              {"Projects", "项目"},
	"dash.projects":           {"Projects", "项目"},
	"dash.all_branches":       {"all", "全部"},
	"dash.no_projects_admin":  {"No projects yet. Create one with", "还没有项目。可用以下接口创建："},
	"dash.no_projects":        {"You are not a member of any project yet. Ask an administrator to add you.", "你还不是任何项目的成员，请联系管理员添加。"},
	"dash.recent_builds":      {"Recent builds", "最近的构建"},
	"dash.recent_deployments": {"Recent deployments", "最近的部署"},
	"builds.none":             {"No builds yet.", "还没有构建。"},
	"deployments.none":        {"No deployments yet.", "还没有部署。"},
	"versions.none":           {"No versions yet: a successful build makes one.", "还没有版本：构建成功后会生成版本。"},
	"events.none":             {"No webhook events yet.", "还没有收到 Webhook 事件。"},

	// project page
	"project.deploy":          {"Deploy…", "部署…"},
	"project.settings":        {"Settings", "设置"},
	"project.clone_url":       {"Clone URL", "克隆地址"},
	"project.trigger":         {"Build trigger", "构建触发"},
	"project.trigger_keyword": {"commit messages with “%s”", "提交说明包含“%s”"},
	"project.trigger_every":   {"every push", "每次推送"},
	"project.trigger_tags":    {", and tags", "，以及标签"},
	"project.keep":            {"Versions kept", "保留版本数"},
	"project.environments":    {"Environments", "环境"},
	"project.builds":          {"Builds", "构建"},
	"project.versions":        {"Versions", "版本"},
	"project.deployments":     {"Deployments", "部署"},
	"project.events":          {"Webhook events", "Webhook 事件"},
	"estimate.usually":        {"usually takes about %s", "通常需要约 %s"},
	"env.protected":           {"protected", "受保护"},
	"env.batch":               {"batches of %s", "每批 %s"},
	"env.in_progress":         {"deploying %s: %s", "正在部署 %s：%s"},
	"env.queued":              {"%d waiting", "%d 个排队中"},
	"env.nothing":             {"nothing deployed", "未部署"},
	"env.previous":            {"before: %s", "上一版本：%s"},
	"env.since":               {"since %s", "自 %s"},
	"env.no_hosts":            {"No hosts in this environment.", "此环境没有主机。"},
	"env.none":                {"No environments yet.", "还没有环境。"},
	"event.built":             {"built", "已构建"},
	"event.skipped":           {"not built", "未构建"},
	"build.ref":               {"branch or tag", "分支或标签"},
	"build.start":             {"Build now", "立即构建"},

	// build and deployment pages
	"build.title":               {"Build #%d", "构建 #%d"},
	"build.cancel_confirm":      {"Cancel this build?", "确定取消此构建吗？"},
	"deployment.title":          {"Deployment #%d", "部署 #%d"},
	"deployment.cancel_confirm": {"Cancel this deployment?", "确定取消此部署吗？"},
	"deployment.retry":          {"Retry failed hosts", "重试失败的主机"},
	"deployment.waiting":        {"Waiting for", "正在等待"},
	"deployment.hosts":          {"Hosts", "主机"},
	"deployment.host_log":       {"log", "日志"},
	"deployment.all_hosts":      {"Show the log of all hosts", "显示所有主机的日志"},
	"log.title":                 {"Log", "日志"},
	"log.follow":                {"Follow", "自动滚动"},
	"log.raw":                   {"Raw log", "原始日志"},
	"log.more":                  {"The page shows the first lines; the rest arrive below with JavaScript, or see the raw log.", "页面只显示前面的日志；其余部分会通过 JavaScript 继续加载，也可查看原始日志。"},
	"log.empty":                 {"No log lines yet.", "还没有日志。"},

	// deploy dialog
	"deploy.title":            {"Deploy", "部署"},
	"deploy.heading":          {"Deploy %s", "部署 %s"},
	"deploy.hosts":            {"Hosts", "主机"},
	"deploy.all_hosts":        {"All hosts", "全部主机"},
	"deploy.batch":            {"Batch size", "每批数量"},
	"deploy.strategy_default": {"as in .ferry.yml", "按 .ferry.yml"},
	"deploy.protected_ok":     {"This environment is protected; you have the production right.", "此环境受保护；你有生产环境发布权限。"},
	"deploy.protected_needs":  {"This environment is protected: deploying to it needs the production right on the project.", "此环境受保护：部署需要项目的生产环境发布权限。"},
	"deploy.runs_on":          {"runs on %s", "运行于 %s"},
	"deploy.no_hosts":         {"Choose at least one host.", "请至少选择一台主机。"},
	"deploy.submit":           {"Deploy", "开始部署"},

	// project settings
	"settings.title":          {"Settings", "设置"},
	"settings.heading":        {"Settings of %s", "%s 的设置"},
	"settings.webhook":        {"GitLab webhook", "GitLab Webhook"},
	"settings.webhook_help":   {"Paste the URL and the secret token into the project's Settings › Webhooks in GitLab, with push and tag events, or let ferry register the hook.", "将地址和密钥填入 GitLab 项目的“设置 › Webhooks”，勾选推送和标签事件；或由 ferry 自动注册。"},
	"settings.webhook_url":    {"URL", "地址"},
	"settings.webhook_secret": {"Secret token", "密钥"},
	"settings.no_secret":      {"not set", "未设置"},
	"settings.gitlab_token":   {"GitLab API token", "GitLab API 令牌"},
	"settings.token_set":      {"this project's own", "项目专用令牌"},
	"settings.token_global":   {"ferry's global token", "使用全局令牌"},
	"settings.register":       {"Register webhook in GitLab", "在 GitLab 中注册 Webhook"},
	"settings.registered":     {"Webhook registered in GitLab.", "已在 GitLab 中注册 Webhook。"},
	"settings.members":        {"Members", "成员"},
	"settings.no_members":     {"No members yet.", "还没有成员。"},
	"settings.production":     {"production right", "生产发布权限"},
	"settings.remove_confirm": {"Remove %s?", "确定删除 %s 吗？"},
	"settings.new_env":        {"New environment", "新建环境"},
	"settings.channels":       {"Notification channels", "通知渠道"},
	"channels.none":           {"No channels yet.", "还没有通知渠道。"},
	"channels.test":           {"Send a test message", "发送测试消息"},
	"channels.sent":           {"Test message sent.", "测试消息已发送。"},
	"channels.events":         {"Events", "事件"},
	"channels.target":         {"Sends to", "发送到"},
	"channels.failed":         {"Failed deliveries", "发送失败的通知"},
	"channels.failed_none":    {"No failed deliveries.", "没有发送失败的通知。"},
	"channels.disabled":       {"off", "已停用"},
	"channels.event":          {"Event", "事件"},
	"channels.attempts":       {"Tries", "尝试次数"},

	// the webhook signing token on the settings page
	"settings.signing_token":          {"Signing token", "签名令牌"},
	"settings.token_set_signed":       {"set: deliveries must be signed", "已设置：推送必须带签名"},
	"settings.signing_generate":       {"Generate", "生成"},
	"settings.signing_save":           {"Save signing token", "保存签名令牌"},
	"settings.signing_remove_confirm": {"Remove the signing token? Unsigned deliveries will be accepted again.", "确定删除签名令牌吗？之后将再次接受未签名的推送。"},
	"settings.signing_help":           {"With a signing token, ferry refuses any delivery that is not signed with it, or was signed more than 5 minutes ago. Generate or paste one (whsec_…), save it, then register the webhook (ferry sends the token to GitLab) or enter the same token in the hook's settings in GitLab.", "设置签名令牌后，ferry 拒绝未用它签名或签名超过 5 分钟的推送。生成或粘贴一个令牌（whsec_…）并保存，然后注册 Webhook（ferry 会把令牌发给 GitLab），或在 GitLab 的 Webhook 设置中填入同一令牌。"},

	// hosts
	"hosts.address":       {"Address", "地址"},
	"hosts.port":          {"SSH port", "SSH 端口"},
	"hosts.user":          {"User", "登录用户"},
	"hosts.key":           {"Private key set", "已设私钥"},
	"hosts.fingerprint":   {"Host key", "主机密钥"},
	"hosts.tofu":          {"recorded on first connection", "首次连接时记录"},
	"hosts.none":          {"No hosts yet.", "还没有主机。"},
	"hosts.new":           {"New host", "新建主机"},
	"hosts.private_key":   {"Private key (PEM)", "私钥（PEM）"},
	"hosts.host_key":      {"Host key (optional)", "主机公钥（可选）"},
	"hosts.host_key_help": {"An authorized_keys line such as the output of ssh-keyscan. Left empty, ferry records the key on its first connection and refuses a changed one after that.", "authorized_keys 格式，例如 ssh-keyscan 的输出。留空则 ferry 在首次连接时记录，之后拒绝变化的密钥。"},

	// users, tokens, audit
	"users.email":      {"Mail", "邮箱"},
	"users.new":        {"New user", "新建用户"},
	"tokens.heading":   {"Your API tokens", "你的 API 令牌"},
	"tokens.help":      {"Scripts and other systems use a token as “Authorization: Bearer <token>”.", "脚本和其他系统以“Authorization: Bearer <令牌>”使用令牌。"},
	"tokens.prefix":    {"Starts with", "开头"},
	"tokens.last_used": {"Last used", "最近使用"},
	"tokens.never":     {"never", "从未"},
	"tokens.none":      {"No tokens yet.", "还没有令牌。"},
	"tokens.name":      {"what it is for", "用途"},
	"tokens.create":    {"Create token", "创建令牌"},
	"tokens.once":      {"Copy the token now: it is shown only once.", "请立即复制令牌：它只显示这一次。"},
	"audit.when":       {"When", "时间"},
	"audit.action":     {"Action", "操作"},
	"audit.target":     {"Target", "对象"},
	"audit.detail":     {"Detail", "详情"},
	"audit.from":       {"From", "来源"},
	"audit.none":       {"No entries.", "没有记录。"},
	"audit.older":      {"Older entries", "更早的记录"},

	// change control: approvals, schedules, freezes
	"status.awaiting_approval":    {"awaiting approval", "待审批"},
	"status.scheduled":            {"scheduled", "已定时"},
	"status.rejected":             {"rejected", "已驳回"},
	"deploy.when":                 {"When", "何时部署"},
	"deploy.now":                  {"Now", "立即"},
	"deploy.later":                {"At a time", "定时"},
	"deploy.at":                   {"Time (your time zone)", "时间（你所在时区）"},
	"deploy.needs_approval":       {"Needs %d approval(s) by someone other than you before it runs.", "运行前需要除你以外的 %d 人审批。"},
	"deploy.approvers":            {"Who may approve: %s.", "可审批的人：%s。"},
	"deploy.no_approvers":         {"Nobody else may approve deployments here yet: ask an administrator.", "目前没有其他人可以审批此环境的部署，请联系管理员。"},
	"deploy.frozen":               {"Frozen now: %s. A deployment now is refused; schedule it for after the freeze.", "当前处于冻结期：%s。现在部署会被拒绝，请定时到冻结期之后。"},
	"deploy.override":             {"Override the freeze (administrators)", "越过冻结期（仅管理员）"},
	"deploy.override_reason":      {"Reason for the override", "越过冻结的理由"},
	"approval.heading":            {"Approvals", "审批"},
	"approval.needed":             {"%d approval(s) needed", "需要 %d 人审批"},
	"approval.comment":            {"Comment", "备注"},
	"approval.approve":            {"Approve", "批准"},
	"approval.reject":             {"Reject", "驳回"},
	"approval.none":               {"No decisions yet.", "还没有审批记录。"},
	"approval.who":                {"Who may still decide: %s.", "尚可审批的人：%s。"},
	"approval.until":              {"Awaiting approval until %s (%s).", "等待审批，截止 %s（%s）。"},
	"approval.ends_rejected":      {"Not approved by then, it ends as rejected.", "届时未获批准将自动驳回。"},
	"approval.ends_canceled":      {"Not approved by then, it ends as canceled.", "届时未获批准将自动取消。"},
	"until.past":                  {"time is up", "已到期"},
	"until.soon":                  {"in less than a minute", "不到一分钟后"},
	"until.min":                   {"in %d min", "%d 分钟后"},
	"until.hours":                 {"in %d h %02d min", "%d 小时 %02d 分钟后"},
	"until.days":                  {"in %d d %d h", "%d 天 %d 小时后"},
	"approval.decision":           {"Decision", "决定"},
	"approval.approved":           {"approved", "批准"},
	"approval.rejected":           {"rejected", "驳回"},
	"col.requested_by":            {"Requested by", "申请人"},
	"col.scheduled_at":            {"Scheduled for", "计划时间"},
	"col.frozen_by":               {"Frozen by", "冻结窗口"},
	"col.override_reason":         {"Freeze overridden", "越过冻结"},
	"dash.approvals":              {"Waiting for your approval", "等待你审批"},
	"env.frozen":                  {"frozen: %s", "冻结中：%s"},
	"env.approvals":               {"%d approval(s)", "需 %d 人审批"},
	"env.gated":                   {"%d awaiting approval or scheduled", "%d 个待审批或已定时"},
	"settings.gates":              {"Approvals and freezes of %s", "%s 的审批与冻结"},
	"settings.approvals_required": {"Approvals required (0 = none)", "需要审批人数（0 = 不需要）"},
	"settings.freezes":            {"Freeze windows (JSON)", "冻结窗口（JSON）"},
	"settings.freezes_help":       {`A list of {"from": "2026-12-24T18:00:00+08:00", "until": "…"} or {"cron": "0 18 * * 5", "duration": "62h", "timezone": "Asia/Shanghai"}, each with an optional "reason".`, `列表，每项为 {"from": "2026-12-24T18:00:00+08:00", "until": "…"} 或 {"cron": "0 18 * * 5", "duration": "62h", "timezone": "Asia/Shanghai"}，可带 "reason"。`},
	"settings.freezes_json":       {"Freeze windows are not valid JSON", "冻结窗口不是有效的 JSON"},
	"settings.freezes_n":          {"%d freeze window(s)", "%d 个冻结窗口"},
	"settings.save":               {"Save", "保存"},

	// forms of every resource (issue 14): the account page
	"account.title":         {"Your account", "我的账号"},
	"account.heading":       {"Your account: %s", "我的账号：%s"},
	"account.email":         {"Email", "邮箱"},
	"account.role":          {"Role", "角色"},
	"account.password":      {"Change my password", "修改密码"},
	"account.current":       {"Current password", "当前密码"},
	"account.new":           {"New password", "新密码"},
	"account.repeat":        {"New password again", "再次输入新密码"},
	"account.mismatch":      {"The two new passwords differ", "两次输入的新密码不一致"},
	"account.password_help": {"At least 8 characters. Changing it logs you out everywhere, here too: log in again with the new one.", "至少 8 个字符。修改后所有登录（包括当前）都会退出，请用新密码重新登录。"},
	"account.change":        {"Change password", "修改密码"},

	// forms of every resource: projects
	"project.none_admin":        {"No projects yet. Create the first one below.", "还没有项目，请在下方创建第一个。"},
	"project.new":               {"New project", "新建项目"},
	"project.new_help":          {"The name is ferry's (letters, digits, - and _); the GitLab path is the project's path with its group, such as shop/orders; the clone URL is what git clones (SSH or HTTPS).", "名称供 ferry 使用（字母、数字、- 和 _）；GitLab 路径为带分组的项目路径，如 shop/orders；克隆地址为 git 克隆用的 SSH 或 HTTPS 地址。"},
	"project.created":           {"Project created:", "项目已创建："},
	"project.secret_once":       {"Put this URL and secret token into the project's Settings › Webhooks in GitLab (push and tag events), or register the hook from the project's settings.", "将此地址和密钥填入 GitLab 项目的“设置 › Webhooks”（勾选推送和标签事件），或在项目设置中自动注册。"},
	"project.next_settings":     {"Go on: environments, members and the webhook →", "下一步：环境、成员与 Webhook →"},
	"project.edit":              {"Project", "项目"},
	"project.keyword":           {"Trigger keyword", "触发关键字"},
	"project.keyword_help":      {"A push builds only when its last commit message holds this word; empty builds every push.", "只有最后一次提交说明包含此关键字时才构建；留空则每次推送都构建。"},
	"project.branches":          {"Branches that build (comma or one a line; empty: all)", "触发构建的分支（逗号或每行一个；留空：全部）"},
	"project.tags":              {"Build pushed tags", "推送标签时构建"},
	"project.deploy_map":        {"Deploy automatically", "自动部署"},
	"project.deploy_map_help":   {"One “branch = environment” a line: a good build of the branch is deployed there.", "每行一条“分支 = 环境”：该分支构建成功后自动部署到该环境。"},
	"project.deploy_line":       {"Write each line as “branch = environment”", "每行应写作“分支 = 环境”"},
	"project.tag_template":      {"Tag template", "标签模板"},
	"project.tag_template_help": {"The tag ferry puts on a good build; placeholders {version} {branch} {sha} {short_sha} {number} {project}; empty: ferry-{version}.", "构建成功后 ferry 打的标签；占位符 {version} {branch} {sha} {short_sha} {number} {project}；留空：ferry-{version}。"},
	"project.saved":             {"Saved.", "已保存。"},
	"project.delete":            {"Delete project", "删除项目"},
	"project.delete_help":       {"Deletes the project with its environments, builds, versions, deployments and channels. The hosts stay.", "删除项目及其环境、构建、版本、部署和通知渠道。主机会保留。"},
	"project.delete_type":       {"Type %s to confirm", "输入 %s 以确认"},
	"project.delete_mismatch":   {"Type the project's name, %s, to delete it", "请输入项目名称 %s 以删除"},

	// forms of every resource: channels
	"nav.channels":                       {"Channels", "通知渠道"},
	"channels.global":                    {"Global notification channels", "全局通知渠道"},
	"channels.global_help":               {"A global channel hears about every project, as if each project had it.", "全局渠道接收所有项目的通知，如同每个项目都配置了它。"},
	"channels.new":                       {"New channel", "新建通知渠道"},
	"channels.edit":                      {"Edit %s channel #%d", "编辑 %s 渠道 #%d"},
	"channels.remove_confirm":            {"Remove this channel?", "确定删除此通知渠道吗？"},
	"channels.url":                       {"Robot or webhook URL (email: smtp://user:pass@host:587)", "机器人或 Webhook 地址（邮件：smtp://用户:密码@主机:587）"},
	"channels.url_help":                  {"Passwords and access tokens in the URL are stored encrypted and shown masked; leave the masked URL as it is to keep it.", "地址中的密码和访问令牌加密保存并以掩码显示；保留掩码地址不变即沿用原地址。"},
	"channels.secret":                    {"Signing secret (DingTalk, Feishu, webhook)", "签名密钥（钉钉、飞书、Webhook）"},
	"channels.secret_kept":               {"set; leave empty to keep it", "已设置；留空则保持不变"},
	"channels.keyword":                   {"Keyword the robot requires (DingTalk, Feishu)", "机器人要求的关键词（钉钉、飞书）"},
	"channels.format":                    {"Message format", "消息格式"},
	"channels.format_default":            {"the kind's default", "默认格式"},
	"channels.recipients":                {"Recipients (email; comma or one a line)", "收件人（邮件；逗号或每行一个）"},
	"channels.enabled":                   {"Enabled", "启用"},
	"channel_kind.email":                 {"Email", "邮件"},
	"channel_kind.dingtalk":              {"DingTalk robot", "钉钉机器人"},
	"channel_kind.wecom":                 {"WeCom robot", "企业微信机器人"},
	"channel_kind.feishu":                {"Feishu robot", "飞书机器人"},
	"channel_kind.webhook":               {"Webhook", "Webhook"},
	"event.build.failed":                 {"Build failed", "构建失败"},
	"event.build.succeeded":              {"Build succeeded", "构建成功"},
	"event.deployment.started":           {"Deployment started", "部署开始"},
	"event.deployment.succeeded":         {"Deployment succeeded", "部署成功"},
	"event.deployment.failed":            {"Deployment failed", "部署失败"},
	"event.deployment.canceled":          {"Deployment canceled", "部署已取消"},
	"event.deployment.awaiting_approval": {"Deployment awaits approval", "部署待审批"},
	"event.deployment.approved":          {"Deployment approved", "部署已批准"},
	"event.deployment.rejected":          {"Deployment rejected", "部署被驳回"},

	// forms of every resource: hosts and environments
	"hosts.edit":           {"Edit %s", "编辑 %s"},
	"hosts.key_kept":       {"set; leave empty to keep it", "已设置；留空则保持不变"},
	"hosts.edit_help":      {"A new address keeps the pinned host key: if the machine behind it changed, ferry refuses it until an administrator accepts the new key.", "修改地址后仍沿用已固定的主机密钥：如果背后的机器变了，ferry 会拒绝连接，直到管理员接受新密钥。"},
	"env.edit":             {"Hosts, protection and strategy of %s", "%s 的主机、保护与策略"},
	"hosts.offered":        {"Offered and refused:", "已拒绝的新密钥："},
	"hosts.accept":         {"Accept this key", "接受此密钥"},
	"hosts.accept_confirm": {"Accept the key %s? Check it on the host itself first (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub).", "确定接受密钥 %s 吗？请先在主机上核对（ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub）。"},
	"hosts.host_key_kept":  {"pinned; paste a new authorized_keys line to replace it", "已固定；粘贴新的 authorized_keys 行以替换"},
	"env.protected_help":   {"Only members with the production right may deploy to a protected environment.", "只有拥有生产发布权限的成员才能部署到受保护的环境。"},

	// variables and the config preview (issue 16)
	"vars.title":       {"Variables", "变量"},
	"vars.help":        {"Rendered into the config templates of .ferry.yml and passed to its hooks at deploy; a host's win over an environment's, which win over the project's. A secret is stored encrypted, never shown again and masked in logs.", "部署时渲染进 .ferry.yml 的配置模板并传给钩子；主机的变量优先于环境的，环境的优先于项目的。密文变量加密保存，不再显示，并在日志中遮蔽。"},
	"vars.host_help":   {"Variables of a host win over those of its environments and projects. Only administrators change them.", "主机变量优先于其环境和项目的变量，只有管理员可以修改。"},
	"vars.project":     {"Project variables", "项目变量"},
	"vars.environment": {"Variables of environment %s", "环境 %s 的变量"},
	"vars.host":        {"Variables of host %s", "主机 %s 的变量"},
	"vars.name":        {"Name", "名称"},
	"vars.value":       {"Value", "值"},
	"vars.secret":      {"secret", "密文"},
	"vars.keep":        {"(kept; type to replace)", "（保留原值；输入以替换）"},
	"vars.none":        {"No variables yet.", "还没有变量。"},
	"vars.add":         {"Add a variable", "添加变量"},
	"vars.save":        {"Save variables", "保存变量"},
	"vars.saved":       {"Saved.", "已保存。"},
	"preview.title":    {"Rendered config", "渲染后的配置"},
	"preview.open":     {"Preview the config", "预览配置"},
	"preview.for":      {"Files for host %s, version %s (secrets masked)", "主机 %s、版本 %s 的配置文件（密文已遮蔽）"},
	"preview.none":     {"This version renders no config files.", "此版本没有要渲染的配置文件。"},

	// forms of every resource: users and members
	"users.edit":           {"Edit %s", "编辑 %s"},
	"users.reset_password": {"New password (leave empty to keep)", "新密码（留空则不变）"},
	"users.reset_help":     {"A new password logs the user out everywhere; tell it to them another way.", "设置新密码会让该用户在所有地方退出登录；请通过其他途径告知对方。"},
	"users.self_help":      {"Your own password and administrator right are changed elsewhere:", "你自己的密码和管理员权限需在别处修改："},
	"members.grant":        {"Give the production right", "授予生产发布权限"},
	"members.revoke":       {"Take the production right", "收回生产发布权限"},
	// jobs (issue 17): scripts, jobs, runs and schedules
	"jobs.title":           {"Jobs", "作业"},
	"jobs.jobs":            {"Jobs", "作业"},
	"jobs.job":             {"Job", "作业"},
	"jobs.none":            {"No jobs yet.", "还没有作业。"},
	"jobs.step":            {"Step", "步骤"},
	"jobs.what":            {"What", "内容"},
	"jobs.target":          {"Target (account)", "目标（执行账号）"},
	"jobs.on_failure":      {"On failure", "失败时"},
	"jobs.kind.script":     {"run a script", "执行脚本"},
	"jobs.kind.distribute": {"distribute files", "分发文件"},
	"jobs.kind.pause":      {"pause for confirmation", "暂停等待确认"},
	"jobs.run":             {"Run", "执行"},
	"jobs.save_job":        {"Create or change a job", "创建或修改作业"},
	"jobs.description":     {"Description", "说明"},
	"jobs.params_json":     {"Parameters (JSON)", "参数（JSON）"},
	"jobs.steps_json":      {"Steps (JSON)", "步骤（JSON）"},
	"jobs.runs":            {"Recent runs", "最近的执行"},
	"jobs.no_runs":         {"No runs yet.", "还没有执行记录。"},
	"jobs.schedules":       {"Schedules", "定时任务"},
	"jobs.no_schedules":    {"No schedules yet.", "还没有定时任务。"},
	"jobs.time_zone":       {"Time zone", "时区"},
	"jobs.next_run":        {"Next run", "下次执行"},
	"jobs.enabled":         {"enabled", "已启用"},
	"jobs.paused":          {"paused", "已暂停"},
	"jobs.pause":           {"Pause", "暂停"},
	"jobs.resume":          {"Resume", "恢复"},
	"jobs.remove_schedule": {"Remove this schedule?", "确定删除这个定时任务？"},
	"jobs.add_schedule":    {"Add schedule", "添加定时任务"},
	"jobs.scripts":         {"Scripts", "脚本"},
	"jobs.no_scripts":      {"No scripts yet.", "还没有脚本。"},
	"jobs.language":        {"Language", "语言"},
	"jobs.saved_by":        {"Saved", "保存"},
	"jobs.save_version":    {"Save as version %d", "保存为第 %d 版"},
	"jobs.accounts":        {"Execution accounts", "执行账号"},
	"jobs.no_accounts":     {"No execution accounts yet; an administrator adds them here.", "还没有执行账号；管理员可在此添加。"},
	"action.save":          {"Save", "保存"},
	"run.title":            {"Run %d", "执行 %d"},
	"run.continue":         {"Continue", "继续"},
	"run.stop":             {"Stop", "停止"},
	"run.retry":            {"Retry failed hosts", "重试失败的主机"},
	"run.cancel_confirm":   {"Cancel this run? Commands running on the hosts are killed.", "确定取消这次执行？主机上正在运行的命令会被终止。"},
	"run.exit_code":        {"Exit code", "退出码"},
	"run.params":           {"Parameters", "参数"},
	"status.paused":        {"paused", "已暂停"},
	"project.jobs":         {"Jobs", "作业"},

	// guided first run and host keys (ui14)
	"hosts.changed":             {"The host now offers another key. Pinned: %s — offered now: %s.", "主机现在提供了另一个密钥。已固定：%s —— 现在提供：%s。"},
	"hosts.repin":               {"Replace the pinned key", "替换已固定的密钥"},
	"hosts.repin_confirm":       {"Replace the pinned key %s with %s? Deployments then refuse the old key. Check the new one on the host itself first (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub).", "确定把已固定的密钥 %s 替换为 %s 吗？之后部署将拒绝旧密钥。请先在主机上核对新密钥（ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub）。"},
	"hosts.scan":                {"Fetch host key", "获取主机密钥"},
	"hosts.scan_help":           {"Or leave it empty and press \"Fetch host key\" on the host: ferry shows its fingerprint for you to confirm.", "也可以留空，然后在主机上点击“获取主机密钥”：ferry 会显示其指纹供你确认。"},
	"hosts.generate":            {"Let ferry generate a key pair (ed25519)", "由 ferry 生成密钥对（ed25519）"},
	"hosts.public_key":          {"Public key for authorized_keys", "用于 authorized_keys 的公钥"},
	"hosts.public_key_help":     {"Add this line to ~/.ssh/authorized_keys of the host's user, then fetch and confirm the host key.", "把这一行加入该主机用户的 ~/.ssh/authorized_keys，然后获取并确认主机密钥。"},
	"setup.title":               {"Set up ferry", "设置 ferry"},
	"setup.intro":               {"Five steps from an empty ferry to the first deployment. Each step's page links on to the next.", "从空的 ferry 到第一次部署只需五步。每一步的页面都会链接到下一步。"},
	"setup.banner":              {"First run, step %d of %d:", "首次使用，第 %d 步（共 %d 步）："},
	"setup.go":                  {"Go there", "前往"},
	"setup.open":                {"Open", "打开"},
	"setup.all":                 {"all steps", "全部步骤"},
	"setup.done":                {"done", "已完成"},
	"setup.finished":            {"ferry is set up: a deployment has succeeded.", "ferry 已设置完成：已有一次部署成功。"},
	"setup.step.host":           {"Add a host and confirm its key", "添加主机并确认其密钥"},
	"setup.step.project":        {"Create a project", "创建项目"},
	"setup.step.environment":    {"Give it an environment that a good build deploys to", "为它添加一个构建成功后自动部署的环境"},
	"setup.step.webhook":        {"Register the GitLab webhook", "注册 GitLab Webhook"},
	"setup.step.deploy":         {"Push, and watch the first deployment", "推送代码，观看第一次部署"},
	"setup.help.host":           {"Paste a private key or let ferry generate a key pair and put its public half in the host's authorized_keys; then fetch the host key and confirm its fingerprint.", "粘贴私钥，或由 ferry 生成密钥对并把公钥放入主机的 authorized_keys；然后获取主机密钥并确认其指纹。"},
	"setup.help.project":        {"Name the GitLab repository ferry builds: its path and clone URL. ferry shows the webhook secret once.", "填写 ferry 要构建的 GitLab 仓库：路径和克隆地址。Webhook 密钥只显示一次。"},
	"setup.help.environment":    {"Create an environment with the host, then in the project's trigger map a branch to it (main = production).", "创建包含该主机的环境，然后在项目触发规则中把分支映射到它（main = production）。"},
	"setup.help.webhook":        {"In GitLab: Settings → Webhooks, paste the URL and the secret token, tick push events. Or press \"Register on GitLab\" when ferry has a GitLab token.", "在 GitLab 的 设置 → Webhooks 中粘贴地址和密钥，勾选推送事件。若 ferry 有 GitLab 令牌，也可点击“在 GitLab 注册”。"},
	"setup.help.deploy":         {"Push a commit: ferry builds it, keeps the version and deploys it to the environment.", "推送一次提交：ferry 构建它、保存版本并部署到环境。"},
	"setup.secret_on_settings":  {"the secret token was shown when the project was created and is on its settings page", "密钥在创建项目时已显示，也可在项目设置页查看"},
	"setup.push_to":             {"Push to %s (a commit message containing \"%[3]s\") and it deploys to %[2]s.", "推送到 %s（提交说明包含“%[3]s”），即部署到 %[2]s。"},
	"setup.latest_deployment":   {"Deployment #%d", "部署 #%d"},
	"nav.setup":                 {"Setup", "设置向导"},
	"changes.running":           {"Running there now: %s", "当前运行：%s"},
	"changes.previous":          {"The version before: %s", "上一个版本：%s"},
	"changes.nothing":           {"Nothing runs in this environment yet.", "该环境还没有运行任何版本。"},
	"changes.first_version":     {"The first version of the project.", "这是项目的第一个版本。"},
	"changes.first":             {"Its latest %d commits:", "最近的 %d 个提交："},
	"changes.forward":           {"Ships %d new commits:", "将发布 %d 个新提交："},
	"changes.rollback":          {"Rollback: takes away these %d commits:", "回滚：将撤下这 %d 个提交："},
	"changes.same":              {"The same commit runs there already.", "该环境已在运行同一个提交。"},
	"changes.other":             {"Another line of history: %d commits not in the running version:", "另一条提交历史：%d 个提交不在当前运行的版本中："},
	"changes.more":              {"…and more; see GitLab for the whole list.", "……还有更多，完整列表请在 GitLab 查看。"},
	"changes.since":             {"Changes since the version before", "相对上一个版本的变更"},
	"strategy.from_pipeline":    {"from .ferry.yml of %s", "来自 %s 的 .ferry.yml"},
	"strategy.from_environment": {"set on the environment", "环境上的设置"},
	"strategy.from_deployment":  {"asked for this deployment", "本次部署指定"},
	"strategy.from_default":     {"the default", "默认"},
	"build.latest":              {"its latest commit", "最新提交"},
	"build.commit":              {"Commit", "提交"},
	"project.gitlab_search":     {"Find it on GitLab", "在 GitLab 中查找"},
	"project.gitlab_none":       {"No GitLab project matches.", "没有匹配的 GitLab 项目。"},
	"version.heading":           {"Version %s", "版本 %s"},
	"version.deploy":            {"Deploy this version…", "部署此版本…"},
	"version.deploy_rollback":   {"Deploy or roll back to this version…", "部署或回滚到此版本…"},
	"version.build":             {"Build #%d", "构建 #%d"},
	"version.kept":              {"Kept", "保存时间"},
	"version.runs_on":           {"Where it runs now", "当前运行位置"},
	"version.runs_nowhere":      {"This version runs on no host now.", "此版本当前没有在任何主机上运行。"},
}
