# Herd install script: msi package of vaccine-b 7.0 (b-1112).
# PowerShell; run by herd-agent with HERD_PACKAGE set to the downloaded file.
$ErrorActionPreference = 'Stop'
$sha256 = 'abababababababababababababababababababababababababababababababab'
$size = 2345
$package = $env:HERD_PACKAGE
if (-not $package) { throw 'herd: HERD_PACKAGE must name the downloaded package' }
$actualSize = (Get-Item -LiteralPath $package).Length
if ($actualSize -ne $size) { throw "herd: $package is $actualSize bytes, expected $size" }
$actualSha256 = (Get-FileHash -Algorithm SHA256 -LiteralPath $package).Hash.ToLowerInvariant()
if ($actualSha256 -ne $sha256) { throw "herd: $package has SHA-256 $actualSha256, expected $sha256" }
$process = Start-Process -FilePath 'msiexec.exe' -ArgumentList @('/i', ('"{0}"' -f $package), '/qn', '/norestart') -Wait -PassThru
if ($process.ExitCode -notin 0, 3010) { throw "herd: msiexec /i failed with exit code $($process.ExitCode)" }
