/**
 * The zsh completion function `_haven`: the same tables as the bash script (bash.ts) for the
 * walk, plus descriptions of commands and options for zsh's menus.
 */
import { argumentBranches, optionValueBranches } from './bash.ts';
import { quote, type ShellCommand } from './shell.ts';

/** `name:description` for _describe (a colon inside the name must be escaped). */
function entry(name: string, description: string): string {
  return `${name.replace(/:/g, '\\:')}:${description.split('\n')[0] ?? ''}`;
}

function printBranches(commands: readonly ShellCommand[], entries: (c: ShellCommand) => string[]): string[] {
  return commands
    .filter((c) => entries(c).length > 0)
    .map((c) => `    ${quote(c.key)}) print -rl -- ${entries(c).map(quote).join(' ')} ;;`);
}

export function zshCompletion(commands: readonly ShellCommand[]): string {
  const subs = (c: ShellCommand) => c.subcommands.map((s) => entry(s.name, s.description));
  const opts = (c: ShellCommand) => c.options.flatMap((o) => o.names.map((n) => entry(n, o.description)));
  return `#compdef haven
# zsh completion for haven(1). Generated from haven's command definitions
# (src/cli/reference/zsh.ts, run by scripts/build); \`haven completion zsh\` prints it.

_haven_subcommands() {
  case "$1" in
${printBranches(commands, subs).join('\n')}
  esac
}

_haven_options() {
  case "$1" in
${printBranches(commands, opts).join('\n')}
  esac
}

_haven_option_value() {
  case "$1|$2" in
${optionValueBranches(commands).join('\n')}
  esac
}

_haven_argument() {
  case "$1|$2" in
${argumentBranches(commands).join('\n')}
  esac
}

# Offers the candidates of completer $1 ($2: a --config file).
_haven_complete() {
  local -a values
  case "$1" in
    servers|jobs|targets|drills)
      values=(\${(f)"$(command haven \${2:+--config "$2"} completion values "$1" 2>/dev/null)"})
      compadd -a values ;;
    files) _files ;;
    dirs) _directories ;;
    words:*) values=(\${=1#words:}); compadd -a values ;;
    *) _message value ;;
  esac
}

_haven() {
  # Not "path": zsh ties that name to PATH.
  local cmdpath="" npos=0 i w kind config="" cur="$words[CURRENT]" prev="$words[CURRENT-1]"
  local -a described names
  for ((i = 2; i < CURRENT; i++)); do
    w="$words[i]"
    if [[ $w == -* ]]; then
      [[ $w == *=* ]] && continue
      kind="$(_haven_option_value "$cmdpath" "$w")"
      [[ -z $kind ]] && continue
      [[ $w == -c || $w == --config ]] && config="$words[i+1]"
      ((i++))
      continue
    fi
    names=(\${\${(f)"$(_haven_subcommands "$cmdpath")"}%%:*})
    if ((npos == 0)) && ((\${names[(Ie)$w]})); then
      cmdpath="\${cmdpath:+$cmdpath }$w"
    else
      ((npos++))
    fi
  done
  if [[ $cur == -*=* ]]; then
    kind="$(_haven_option_value "$cmdpath" "\${cur%%=*}")"
    if [[ -n $kind ]]; then compset -P '*='; _haven_complete "$kind" "$config"; return; fi
  fi
  if [[ $prev == -* ]]; then
    kind="$(_haven_option_value "$cmdpath" "$prev")"
    if [[ -n $kind ]]; then _haven_complete "$kind" "$config"; return; fi
  fi
  if [[ $cur == -* ]]; then
    described=(\${(f)"$(_haven_options "$cmdpath")"})
    _describe -t options option described
    return
  fi
  described=(\${(f)"$(_haven_subcommands "$cmdpath")"})
  if (($#described > 0)) && ((npos == 0)); then
    _describe -t commands command described
    return
  fi
  _haven_complete "$(_haven_argument "$cmdpath" "$npos")" "$config"
}

_haven "$@"
`;
}
