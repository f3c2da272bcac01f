/**
 * Driving haven's shell completions as the shells do: bash's completion function with
 * COMP_WORDS/COMP_CWORD in a bash process, zsh's in an interactive zsh on a pseudo-terminal
 * (zsh/zpty) where Tab is typed and the listing zsh draws is read back.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

const q = (w: string) => `'${w.replace(/'/g, `'\\''`)}'`;

/**
 * The candidates bash's `_haven` offers for `words` (the last one is being completed), after
 * sourcing `script`; checks that the script registers `_haven` for `haven`.
 */
export function bashComplete(script: string, words: string[], env: NodeJS.ProcessEnv): string[] {
  const out = execFileSync(
    'bash',
    [
      '-c',
      `source ${q(script)}; complete -p haven; COMP_WORDS=(${words.map(q).join(' ')}); ` +
        `COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _haven; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    { env, encoding: 'utf8' },
  );
  const [registration, ...candidates] = out.split('\n');
  assert.equal(registration, 'complete -F _haven haven');
  return candidates.filter(Boolean);
}

/**
 * What zsh lists after `line` and a Tab, with `fpath` (null: zsh's own, which on Debian holds
 * /usr/share/zsh/vendor-completions) searched for `_haven`; read until the listing matches the
 * zsh glob `until`, for at most 20 s. Terminal escape sequences are removed.
 */
export function zshComplete(
  fpath: string | null,
  line: string,
  until: string,
  env: NodeJS.ProcessEnv,
): string {
  const setup = `PS1="%% "; ${fpath ? `fpath=(${fpath} $fpath); ` : ''}autoload -Uz compinit; compinit -u -D; unsetopt beep`;
  const driver = `
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z ${q(setup)}
zpty -w z 'echo READY'
while zpty -r -t z l; do [[ $l == *READY* ]] && break; done
sleep 0.3
zpty -n -w z ${q(line)}$'\\t'
acc=''
end=$((SECONDS + 20))
while ((SECONDS < end)); do
  if zpty -r -t z l; then acc+=$l; [[ $acc == ${until} ]] && break; else sleep 0.1; fi
done
print -rn -- "$acc"
zpty -d z
`;
  const out = execFileSync('zsh', ['-f', '-c', driver], { env, encoding: 'utf8', timeout: 40_000 });
  return out.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
}
