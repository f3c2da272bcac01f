/**
 * `haven completion bash|zsh`: prints the shell completion script, generated from the command
 * definitions of this haven (docs/install.md says where to put it; the Debian package installs
 * it). `haven completion values <kind>` is what the scripts call for names: servers from
 * libvirt, jobs, targets and drills from the configuration.
 */
import { Argument, type Command } from 'commander';
import { Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { examples } from '../options.ts';

const KINDS = ['servers', 'jobs', 'targets', 'drills'] as const;
type Kind = (typeof KINDS)[number];

async function values(ctx: CliContext, kind: Kind): Promise<string[]> {
  if (kind === 'servers') {
    // `virsh list --name` only: `haven servers` describes every disk, too slow for a Tab press.
    const out = await new Virsh({ log: ctx.log }).run(['list', '--all', '--name']);
    return out
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  }
  const config = await ctx.config();
  return Object.keys(config[kind]);
}

export default function register(program: Command, context: () => CliContext): void {
  const completion = program
    .command('completion')
    .description('print the shell completion script (bash or zsh) for haven');
  examples(completion, [
    ['haven completion bash > /etc/bash_completion.d/haven', 'install the bash completion for every user'],
    ['haven completion zsh > ~/.zfunc/_haven', 'the zsh completion, for a directory in $fpath'],
  ]);
  for (const shell of ['bash', 'zsh'] as const) {
    const command = completion
      .command(shell)
      .description(`print the ${shell} completion script`)
      .action(async () => {
        // Every command's flags: the program that runs this one has loaded only this module.
        const { commandTree } = await import('../main.ts');
        const { completionScript } = await import('../reference/index.ts');
        const full = await commandTree();
        context().stdout.write(completionScript(full, shell));
      });
    examples(command, [[`haven completion ${shell}`, `print the ${shell} completion script on stdout`]]);
  }
  completion
    .command('values', { hidden: true })
    .description('names to complete, one per line (used by the completion scripts)')
    .addArgument(new Argument('<kind>', 'what to list').choices(KINDS))
    .action(async (kind: Kind) => {
      const ctx = context();
      for (const v of await values(ctx, kind)) ctx.print(v);
    });
}
