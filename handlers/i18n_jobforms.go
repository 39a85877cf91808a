package handlers

// The words of the jobs page's forms (execution accounts, the structured job editor, file
// uploads), kept apart from i18n.go's table so that they merge without conflicts.
var jobFormMessages = map[string][2]string{
	"action.edit":                 {"Edit", "编辑"},
	"jobs.account_new":            {"New execution account", "新建执行账号"},
	"jobs.account_key_keep":       {"New private key (leave empty to keep)", "新私钥（留空则不变）"},
	"jobs.account_key_help":       {"Add an account's public key to ~/.ssh/authorized_keys of its user on the hosts it runs on.", "把执行账号的公钥加入它在目标主机上对应用户的 ~/.ssh/authorized_keys。"},
	"jobs.account_remove":         {"Remove the account %s? Jobs naming it can no longer run.", "确定删除执行账号 %s？引用它的作业将无法执行。"},
	"jobs.editor_json":            {"Edit as JSON", "以 JSON 编辑"},
	"jobs.editor_form":            {"Edit with the form", "以表单编辑"},
	"jobs.job_params":             {"Job parameters", "作业参数"},
	"jobs.add_param":              {"Add parameter", "添加参数"},
	"jobs.param_name":             {"Name", "名称"},
	"jobs.param_default":          {"Default", "默认值"},
	"jobs.steps":                  {"Steps", "步骤"},
	"jobs.add_step":               {"Add step", "添加步骤"},
	"jobs.step_name":              {"Step name", "步骤名称"},
	"jobs.step_kind":              {"Kind", "类型"},
	"jobs.step_up":                {"Move up", "上移"},
	"jobs.step_down":              {"Move down", "下移"},
	"jobs.step_remove":            {"Remove step", "删除步骤"},
	"jobs.script":                 {"Script", "脚本"},
	"jobs.script_version":         {"Version (empty: the latest)", "版本（留空：最新）"},
	"jobs.target_kind":            {"Target", "目标"},
	"jobs.target_env":             {"an environment's hosts", "某环境的主机"},
	"jobs.target_hosts":           {"a host list", "主机列表"},
	"jobs.target_label":           {"hosts with a label", "带某标签的主机"},
	"jobs.target_value":           {"Environment, hosts (comma-separated) or label", "环境、主机（逗号分隔）或标签"},
	"jobs.account":                {"Account", "执行账号"},
	"jobs.timeout":                {"Timeout per host", "每台主机超时"},
	"jobs.batch":                  {"Hosts at once (0: all)", "每批主机数（0：全部）"},
	"jobs.fail_stop":              {"stop", "停止"},
	"jobs.fail_continue":          {"go on", "继续"},
	"jobs.step_params":            {"Parameter values (NAME=value, one a line)", "参数值（每行一个 NAME=value）"},
	"jobs.distribute_what":        {"Version or file", "版本或文件"},
	"jobs.distribute_source":      {"Kept version (or $VERSION)", "保留的版本（或 $VERSION）"},
	"jobs.distribute_file":        {"Uploaded file", "已上传的文件"},
	"jobs.path":                   {"Path on the host", "主机上的路径"},
	"jobs.files":                  {"Files", "文件"},
	"jobs.no_files":               {"No files uploaded yet.", "还没有上传文件。"},
	"jobs.upload":                 {"Upload", "上传"},
	"jobs.upload_help":            {"Files up to 64 MiB, for distribute steps.", "用于分发步骤的文件，最大 64 MiB。"},
	"event.run.awaiting_approval": {"Job run awaits approval", "作业执行待审批"},
	"event.run.rejected":          {"Job run rejected or expired", "作业执行被驳回或已过期"},
	"jobs.bad_param_line":         {"not NAME=value", "不是 NAME=value 格式"},
}

func init() {
	for k, v := range jobFormMessages {
		if _, taken := messages[k]; !taken {
			messages[k] = v
		}
	}
}
