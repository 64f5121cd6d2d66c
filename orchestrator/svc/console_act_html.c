/* console_act_html.c -- the console's action pieces of the pages
 * (console_html.c has the pages): the saga page's section#actions, the
 * sagas list's bulk form, the login page, the header's login link, and
 * the script behind them.
 *
 * The script is plain JavaScript inline (no build step, no CDN). It
 * only calls the JSON API: GET .../preview to show what an action would
 * do (commands with their message ids, compensations in order, or the
 * refusal), then POST .../actions with the reason and the header
 * X-Saga-Console, and shows the orchestrator's answer. Clicks are
 * handled on the document, so the live refresh that swaps <main> keeps
 * them working; while a preview is open its section carries data-busy
 * and the refresh waits (it would wipe the reason being typed).
 */
#include <string.h>

#include "console_int.h"

/* The actions a saga's status allows (engine.h, Operator events). */
static const struct {
	const char *status;
	const char *actions[5];
} allowed[] = {
        {"running", {"retry", "skip", "compensate", "abort", NULL}},
        {"compensating", {"retry", "skip", "mark-compensated", "abort", NULL}},
        {"stuck", {"resume", "skip", "mark-compensated", "abort", NULL}},
};

/* The script, in pieces under C's 4095-byte string limit. */
static const char *const script[] = {
        "<script>(function(){"
        "var H={'Content-Type':'application/json','X-Saga-Console':'1'};"
        "function $(s){return document.querySelector(s)}"
        "function esc(t){var d=document.createElement('div');"
        "d.textContent=t==null?'':String(t);return d.innerHTML}"
        "function done(r){return r.json().catch(function(){return{error:"
        "'HTTP '+r.status}}).then(function(d){d._s=r.status;return d})}"
        "function post(u,b){return fetch(u,{method:'POST',headers:H,"
        "credentials:'same-origin',body:JSON.stringify(b)}).then(done)}"
        "function get(u){return fetch(u,{cache:'no-store',"
        "credentials:'same-origin'}).then(done)}"
        "function login(s){return s==401?' <a href=\"/login?next='+"
        "encodeURIComponent(location.pathname+location.search)+"
        "'\">log in</a>':''}"
        "function err(d){return '<p class=\"error\">'+esc(d.error)+"
        "login(d._s)+'</p>'}"
        "function undos(a,runs){if(!a||!a.length)return '';var h='<p>'+"
        "(runs?'compensations, in this order:':'left undone (abort "
        "undoes nothing):')+'</p><ol class=\"undos\">';"
        "a.forEach(function(u){h+='<li><code>'+esc(u.to)+' '+"
        "esc(u.command)+'</code> id <code class=\"mid\">'+"
        "esc(u.message_id)+'</code>'+(u.outcome_unknown?' (outcome "
        "unknown)':'')+(u.current?' (now)':'')+'</li>'});"
        "return h+'</ol>'}"
        "function show(d){if(d.error)return err(d);var ok=d.result=='ok';"
        "var h='<p class=\"verdict '+(ok?'ok':'refused')+'\">'+"
        "(ok?'would do: ':'refused: ')+esc(d.note)+'</p>';if(!ok)return h;"
        "h+='<p>after: <b>'+esc(d.status)+'</b> in '+esc(d.state)+'</p>';"
        "if(d.commands.length){h+='<p>commands sent:</p><ul class=\"cmds\">';"
        "d.commands.forEach(function(c){h+='<li><code>'+esc(c.to)+' '+"
        "esc(c.command)+'</code> id <code class=\"mid\">'+"
        "esc(c.message_id)+'</code></li>'});h+='</ul>'}"
        "else h+='<p>no command sent</p>';"
        "if(d.events.length)h+='<p>events: '+d.events.map(esc).join(', ')"
        "+'</p>';return h+undos(d.compensations,d.compensations_run)}",
        "var act=null;"
        "function stepq(a,v){return v&&(a=='skip'||a=='mark-compensated')}"
        "function open1(a){var s=$('#actions'),st=$('#act-step');act=a;"
        "s.setAttribute('data-busy','1');$('#act-panel').hidden=false;"
        "$('#act-title').textContent=a;$('#act-result').innerHTML='';"
        "$('#act-preview').textContent='...';$('#act-confirm').disabled=true;"
        "var q='?action='+encodeURIComponent(a)+(st&&stepq(a,st.value)?"
        "'&step='+encodeURIComponent(st.value):'');"
        "get('/api/sagas/'+encodeURIComponent(s.dataset.saga)+'/preview'+q)"
        ".then(function(d){$('#act-preview').innerHTML=show(d);"
        "$('#act-confirm').disabled=d.result!='ok'})}"
        "function close1(){$('#act-panel').hidden=true;"
        "$('#actions').removeAttribute('data-busy')}"
        "function confirm1(){var s=$('#actions'),st=$('#act-step'),"
        "r=$('#act-reason').value.trim();if(!r){$('#act-result').innerHTML="
        "'<p class=\"error\">a reason is required</p>';return}"
        "var b={action:act,reason:r};if(st&&stepq(act,st.value))b.step="
        "st.value;$('#act-confirm').disabled=true;"
        "post('/api/sagas/'+encodeURIComponent(s.dataset.saga)+'/actions',b)"
        ".then(function(d){$('#act-result').innerHTML=d.error?err(d):"
        "'<p class=\"answer '+esc(d.outcome)+'\">'+esc(d.outcome)+': '+"
        "esc(d.note)+' (now '+esc(d.status)+' in '+esc(d.state)+')</p>';"
        "if(d.outcome=='applied'){s.removeAttribute('data-busy');"
        "setTimeout(function(){location.reload()},1500)}"
        "else $('#act-confirm').disabled=false})}",
        "function filters(){var o={};new URLSearchParams(location.search)"
        ".forEach(function(v,k){if(k!='limit'&&k!='after'&&v)o[k]=v});"
        "return o}"
        "var bulk=null;"
        "function counts(o){var h='';Object.keys(o).forEach(function(k){"
        "h+='<li>'+esc(k)+': '+o[k]+'</li>'});return h?'<ul>'+h+'</ul>':''}"
        "function preview2(){var a=$('#bulk-action').value,st="
        "$('#bulk-step').value,q=new URLSearchParams(filters());"
        "q.set('action',a);if(stepq(a,st))q.set('step',st);"
        "$('#bulk-result').innerHTML='';"
        "get('/api/actions/preview?'+q).then(function(d){if(d.error){"
        "$('#bulk-result').innerHTML=err(d);return}"
        "bulk={action:a,step:stepq(a,st)?st:null,n:d.sagas};"
        "$('#bulk').setAttribute('data-busy','1');"
        "$('#bulk-summary').innerHTML='<p class=\"summary\">'+"
        "esc(d.summary)+'</p><p>commands and undos, sagas each:</p>'+"
        "counts(d.commands);$('#bulk-n').textContent=d.sagas;"
        "$('#bulk-panel').hidden=false})}"
        "function confirm2(){var r=$('#bulk-reason').value.trim();"
        "if(!r){$('#bulk-result').innerHTML='<p class=\"error\">a reason "
        "is required</p>';return}var b=filters();b.action=bulk.action;"
        "b.reason=r;b.expect=bulk.n;if(bulk.step)b.step=bulk.step;"
        "$('#bulk-confirm').disabled=true;post('/api/actions',b)"
        ".then(function(d){$('#bulk-confirm').disabled=false;"
        "if(d.error){$('#bulk-result').innerHTML=err(d);return}"
        "$('#bulk-result').innerHTML='<p class=\"answer\">'+d.sagas+"
        "' sagas:</p>'+counts(d.outcomes);"
        "$('#bulk').removeAttribute('data-busy');$('#bulk-panel').hidden="
        "true})}",
        "document.addEventListener('click',function(e){var t=e.target,"
        "b=t.closest('#actions button[data-action]');"
        "if(b){e.preventDefault();open1(b.getAttribute('data-action'))}"
        "else if(t.closest('#act-cancel'))close1();"
        "else if(t.closest('#act-confirm'))confirm1();"
        "else if(t.closest('#bulk-preview'))preview2();"
        "else if(t.closest('#bulk-confirm'))confirm2();"
        "else if(t.closest('#bulk-cancel')){$('#bulk-panel').hidden=true;"
        "$('#bulk').removeAttribute('data-busy')}"
        "else if(t.closest('#logout')){e.preventDefault();"
        "post('/logout',{}).then(function(){location.reload()})}});"
        "document.addEventListener('submit',function(e){"
        "if(!e.target.closest('#login'))return;e.preventDefault();"
        "post('/login',{user:$('#login-user').value,password:"
        "$('#login-password').value}).then(function(d){if(d._s!=200){"
        "$('#login-result').innerHTML=err(d);return}"
        "var n=new URLSearchParams(location.search).get('next');"
        "location.href=n&&/^\\/[^\\/\\\\]/.test(n)?n:'/'})})"
        "})();</script>",
};

void
console_act_script(struct http_response *r)
{
	for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++)
		http_printf(r, "%s", script[i]);
}

void
console_login_link(struct http_response *r, const struct console_viewer *v)
{
	if (v == NULL)
		return;
	if (v->user != NULL) {
		http_printf(r, "<span id=\"user\">");
		html_text(r, v->user);
		http_printf(r, "</span>");
		if (v->can_login)
			http_printf(r, "<a href=\"/logout\" id=\"logout\">log "
			               "out</a>");
	} else if (v->can_login) {
		http_printf(r,
		            "<a href=\"/login\" id=\"login-link\">log in</a>");
	}
}

void
console_actions_section(struct http_response *r, const char *id,
                        const char *status, const char *state,
                        const struct console_viewer *v)
{
	const char *const *acts = NULL;

	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (strcmp(status, allowed[i].status) == 0)
			acts = allowed[i].actions;
	http_printf(r, "<section id=\"actions\" data-saga=\"");
	html_text(r, id);
	http_printf(r, "\"><h2>Actions</h2>");
	if (acts == NULL) {
		http_printf(r, "<p>finished: no action applies</p></section>");
		return;
	}
	for (size_t i = 0; acts[i] != NULL; i++)
		http_printf(r, "<button data-action=\"%s\">%s</button> ",
		            acts[i], acts[i]);
	http_printf(r, "<label>step <input id=\"act-step\" size=\"16\" "
	               "title=\"for skip and mark-compensated\" value=\"");
	html_text(r, state);
	http_printf(r, "\"></label>");
	if (!v->can_act)
		http_printf(r,
		            "<p class=\"muted\">preview only: actions need a "
		            "login (--console-users FILE or "
		            "--console-trust-header NAME; docs/console.md)"
		            "</p>");
	else if (v->user == NULL) {
		http_printf(r, "<p class=\"muted\">not logged in: acting needs "
		               "a <a href=\"/login?next=%%2Fsagas%%2F");
		html_url(r, id);
		http_printf(r, "\">login</a></p>");
	}
	http_printf(r, "<div id=\"act-panel\" hidden><h3>preview: <span "
	               "id=\"act-title\"></span></h3><div id=\"act-preview\">"
	               "</div><label>reason <input id=\"act-reason\" "
	               "size=\"50\" required></label> <button "
	               "id=\"act-confirm\">confirm</button> <button "
	               "id=\"act-cancel\">cancel</button></div><div "
	               "id=\"act-result\"></div></section>");
}

void
console_bulk_form(struct http_response *r, size_t shown)
{
	static const char *const acts[] = {"retry",      "resume",
	                                   "skip",       "abort",
	                                   "compensate", "mark-compensated"};

	http_printf(r,
	            "<section id=\"bulk\"><b>act on every saga of this "
	            "filter</b> (%zu on this page; at most %d) <select "
	            "id=\"bulk-action\">",
	            shown, CONSOLE_BULK_MAX);
	for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++)
		http_printf(r, "<option>%s</option>", acts[i]);
	http_printf(r, "</select><input id=\"bulk-step\" size=\"14\" "
	               "placeholder=\"step\" title=\"for skip and "
	               "mark-compensated\"> <button id=\"bulk-preview\">"
	               "preview</button><div id=\"bulk-panel\" hidden><div "
	               "id=\"bulk-summary\"></div><label>reason <input "
	               "id=\"bulk-reason\" size=\"50\" required></label> "
	               "<button id=\"bulk-confirm\">apply to <span "
	               "id=\"bulk-n\"></span> sagas</button> <button "
	               "id=\"bulk-cancel\">cancel</button></div><div "
	               "id=\"bulk-result\"></div></section>");
}
