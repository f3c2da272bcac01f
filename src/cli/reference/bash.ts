/**
 * The bash completion script for `haven`: tables of the command tree (shell.ts) and a walker
 * that finds the command path in COMP_WORDS. Names of servers, jobs, targets and drills come
 * from `haven completion values <kind>` (libvirt and the configuration) when asked for.
 */
import { type Completer, quote, type ShellCommand } from './shell.ts';

/** The completer as one word the script's `_haven_words` understands. */
export function completerWord(c: Completer): string {
  return typeof c === 'string' ? c : `words:${c.words.join(' ')}`;
}

/** `case` branches mapping `path|option` to the completer of its value (switches have none). */
export function optionValueBranches(commands: readonly ShellCommand[]): string[] {
  const byCompleter = new Map<string, string[]>();
  for (const c of commands) {
    for (const o of c.options) {
      if (o.value === undefined) continue;
      const word = completerWord(o.value);
      const keys = byCompleter.get(word) ?? [];
      keys.push(...o.names.map((n) => quote(`${c.key}|${n}`)));
      byCompleter.set(word, keys);
    }
  }
  return [...byCompleter].map(([word, keys]) => `    ${keys.join('|')}) echo ${quote(word)} ;;`);
}

/** `case` branches mapping `path|index` of a positional argument to its completer. */
export function argumentBranches(commands: readonly ShellCommand[]): string[] {
  const lines: string[] = [];
  for (const c of commands) {
    c.args.forEach((a, i) => {
      if (a !== 'none') lines.push(`    ${quote(`${c.key}|${i}`)}) echo ${quote(completerWord(a))} ;;`);
    });
    const last = c.args.at(-1);
    if (c.variadic && last && last !== 'none') {
      lines.push(`    ${quote(`${c.key}|`)}*) echo ${quote(completerWord(last))} ;;`);
    }
  }
  return lines;
}

function wordBranches(commands: readonly ShellCommand[], words: (c: ShellCommand) => string[]): string[] {
  return commands
    .filter((c) => words(c).length > 0)
    .map((c) => `    ${quote(c.key)}) echo ${quote(words(c).join(' '))} ;;`);
}

export function bashCompletion(commands: readonly ShellCommand[]): string {
  return `# bash completion for haven(1). Generated from haven's command definitions
# (src/cli/reference/bash.ts, run by scripts/build); \`haven completion bash\` prints it.

_haven_subcommands() {
  case "$1" in
${wordBranches(commands, (c) => c.subcommands.map((s) => s.name)).join('\n')}
  esac
}

_haven_options() {
  case "$1" in
${wordBranches(commands, (c) => c.options.flatMap((o) => o.names)).join('\n')}
  esac
}

# How the value of option $2 of command $1 is completed; nothing for a switch.
_haven_option_value() {
  case "$1|$2" in
${optionValueBranches(commands).join('\n')}
  esac
}

# How positional argument $2 (from 0) of command $1 is completed.
_haven_argument() {
  case "$1|$2" in
${argumentBranches(commands).join('\n')}
  esac
}

# Fills COMPREPLY with the candidates of completer $1 for the word $2 ($3: a --config file).
_haven_words() {
  local IFS=$'\\n'
  case "$1" in
    servers|jobs|targets|drills)
      COMPREPLY=($(compgen -W "$(command haven \${3:+--config "$3"} completion values "$1" 2>/dev/null)" -- "$2")) ;;
    files) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$2")) ;;
    dirs) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$2")) ;;
    words:*) IFS=$' \\t\\n'; COMPREPLY=($(compgen -W "\${1#words:}" -- "$2")) ;;
    *) COMPREPLY=() ;;
  esac
}

_haven() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="" cmdpath="" npos=0 i w kind config="" opt=""
  ((COMP_CWORD > 0)) && prev="\${COMP_WORDS[COMP_CWORD-1]}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if [[ $w == -* ]]; then
      kind="$(_haven_option_value "$cmdpath" "$w")"
      [[ -z $kind ]] && continue
      [[ $w == -c || $w == --config ]] && config="\${COMP_WORDS[i+1]}"
      # bash splits --opt=value at '=' (COMP_WORDBREAKS): skip '=' and the value.
      if [[ \${COMP_WORDS[i+1]} == = ]]; then ((i += 2)); else ((i++)); fi
      continue
    fi
    if ((npos == 0)) && [[ " $(_haven_subcommands "$cmdpath") " == *" $w "* ]]; then
      cmdpath="\${cmdpath:+$cmdpath }$w"
    else
      ((npos++))
    fi
  done
  if [[ $cur == = ]]; then
    opt="$prev"; cur=""
  elif [[ $prev == = ]] && ((COMP_CWORD >= 2)); then
    opt="\${COMP_WORDS[COMP_CWORD-2]}"
  elif [[ $prev == -* ]]; then
    opt="$prev"
  fi
  if [[ -n $opt ]]; then
    kind="$(_haven_option_value "$cmdpath" "$opt")"
    if [[ -n $kind ]]; then _haven_words "$kind" "$cur" "$config"; return 0; fi
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_haven_options "$cmdpath")" -- "$cur"))
    return 0
  fi
  local subs
  subs="$(_haven_subcommands "$cmdpath")"
  if [[ -n $subs ]] && ((npos == 0)); then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    return 0
  fi
  _haven_words "$(_haven_argument "$cmdpath" "$npos")" "$cur" "$config"
}

complete -F _haven haven
`;
}
