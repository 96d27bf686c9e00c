# Herd uninstall script: msi package of vaccine-a 5.1.
# PowerShell; run by herd-agent.
$ErrorActionPreference = 'Stop'
$productCode = '{12345678-9ABC-DEF0-1234-56789ABCDEF0}'
$process = Start-Process -FilePath 'msiexec.exe' -ArgumentList @('/x', $productCode, '/qn', '/norestart') -Wait -PassThru
if ($process.ExitCode -notin 0, 3010) { throw "herd: msiexec /x failed with exit code $($process.ExitCode)" }
